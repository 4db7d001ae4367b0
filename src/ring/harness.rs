//! Test support (not part of the daemon): run a runtime as a plain child
//! process wired the way a sandbox wires it — ring memfd at fd 3, request
//! bell at 4, response bell at 5, control socket at 6 — without the
//! confinement, so runtimes can be tested on their own.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use super::{invoke_meta, send_assignment, Assignment, HostRing, RuntimeMessage};
use super::{CONTROL_FD, REQUEST_BELL_FD, RESPONSE_BELL_FD, RING_FD};
use crate::sys::shm::place_fds;

/// A runtime child process and the daemon's ends of its ring and socket.
pub struct RuntimeProcess {
    pub host: HostRing,
    pub control: OwnedFd,
    child: Child,
}

impl RuntimeProcess {
    /// Spawn `cmd` (stdin /dev/null, stdout and stderr inherited) with a
    /// fresh ring for messages up to `max_message` bytes.
    pub fn spawn(mut cmd: Command, max_message: usize) -> anyhow::Result<RuntimeProcess> {
        let (host, end) = HostRing::create(max_message)?;
        let (control, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        cmd.stdin(Stdio::null());
        place_fds(
            &mut cmd,
            vec![
                (end.memfd, RING_FD),
                (end.request_bell, REQUEST_BELL_FD),
                (end.response_bell, RESPONSE_BELL_FD),
                (theirs, CONTROL_FD),
            ],
        );
        let child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
        // Dropping `cmd` closes our copies of the runtime's fds, so a
        // runtime that dies shows as a closed control socket.
        drop(cmd);
        Ok(RuntimeProcess {
            host,
            control,
            child,
        })
    }

    /// Send the assignment with `code_dir` attached.
    pub fn assign(&self, assignment: &Assignment, code_dir: BorrowedFd<'_>) -> anyhow::Result<()> {
        send_assignment(self.control.as_fd(), assignment, code_dir)?;
        Ok(())
    }

    /// Push an INVOKE with a deadline `timeout` from now and wait for the
    /// answer.
    pub fn invoke(
        &mut self,
        id: u64,
        payload: &[u8],
        timeout: Duration,
    ) -> anyhow::Result<RuntimeMessage> {
        let deadline = SystemTime::now().duration_since(UNIX_EPOCH)? + timeout;
        let meta = invoke_meta(id, deadline.as_millis() as u64);
        self.host.send_invoke(id, &meta, payload)?;
        self.wait_message(timeout)
    }

    /// The next message from the runtime, waiting on the response bell up
    /// to `timeout`. Fails if the runtime exits or breaks the protocol.
    pub fn wait_message(&mut self, timeout: Duration) -> anyhow::Result<RuntimeMessage> {
        let start = Instant::now();
        let bell = self.host.response_bell();
        loop {
            if let Some(message) = self.host.recv()? {
                return Ok(message);
            }
            if let Some(status) = self.child.try_wait()? {
                // It may have pushed its last message right before exiting.
                if let Some(message) = self.host.recv()? {
                    return Ok(message);
                }
                bail!("runtime exited ({status}) without a message");
            }
            if start.elapsed() > timeout {
                bail!("no message from the runtime within {timeout:?}");
            }
            let mut fds = [PollFd::new(bell.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(50u16))?;
            let mut buf = [0u8; 8];
            // Non-blocking: EAGAIN when it did not ring.
            let _ = nix::unistd::read(&*bell, &mut buf);
        }
    }

    /// Wait up to `timeout` for the runtime to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > timeout {
                bail!("runtime still running after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for RuntimeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
