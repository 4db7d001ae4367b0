//! [`Sandbox`]: the daemon's handle on one live sandbox.

use std::cell::Cell;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::cgroup::{MemoryReport, SandboxCgroup};
use super::package::{Package, SandboxMounts};
use super::reaper::SIGNALED_EXIT_BASE;
use super::spawn::Spawned;
use super::{Assignment, RuntimeKind, SandboxError};
use crate::sys::process::{self, ExitStatus};

/// One sandbox: its init process (pid 1 of its pid namespace), its pidfd,
/// the daemon end of its control socket, its cgroup and its output log.
/// Dropping it without [`Sandbox::destroy`] still kills it and removes the
/// cgroup and the log.
#[derive(Debug)]
pub struct Sandbox {
    id: u64,
    pid: i32,
    host_uid: u32,
    runtime: RuntimeKind,
    pidfd: Rc<OwnedFd>,
    control: OwnedFd,
    cgroup: Option<SandboxCgroup>,
    log: PathBuf,
    /// Its /var/task, /opt and /tmp; detached after the sandbox is gone.
    mounts: SandboxMounts,
    /// How the init ended, once [`Sandbox::exit_status`] reaped it.
    status: Cell<Option<ExitStatus>>,
}

impl Sandbox {
    pub(super) fn new(parts: Spawned, cgroup: SandboxCgroup, mounts: SandboxMounts) -> Sandbox {
        Sandbox {
            id: parts.id,
            pid: parts.pid,
            host_uid: parts.host_uid,
            runtime: parts.runtime,
            pidfd: parts.pidfd,
            control: parts.control,
            cgroup: Some(cgroup),
            log: parts.log,
            mounts,
            status: Cell::new(None),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The init's pid in the daemon's pid namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn host_uid(&self) -> u32 {
        self.host_uid
    }

    pub fn runtime(&self) -> RuntimeKind {
        self.runtime
    }

    /// The runtime's stdout and stderr, capped (see `reaper.rs`); removed
    /// with the sandbox.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Readable once the sandbox's init has exited.
    pub fn pidfd(&self) -> Rc<OwnedFd> {
        Rc::clone(&self.pidfd)
    }

    /// Hand the sandbox its function: mount its package (code at
    /// /var/task, layers at /opt, a fresh /tmp), then one `SOCK_SEQPACKET`
    /// message on the control socket, the assignment as JSON plus the code
    /// directory's descriptor. Never blocks. A sandbox is assigned once.
    pub fn assign(
        &mut self,
        package: Package<'_>,
        code: BorrowedFd<'_>,
        assignment: &Assignment,
    ) -> Result<(), SandboxError> {
        self.mounts.attach(package)?;
        crate::ring::send_assignment(self.control.as_fd(), assignment, code).map_err(|source| {
            SandboxError::Assign {
                id: self.id,
                source,
            }
        })
    }

    /// Why the init failed, when it did: the message it wrote on the control
    /// socket before exiting (read without blocking).
    pub fn init_error(&self) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        match crate::sys::socket::recv_nonblocking(self.control.as_fd(), &mut buf) {
            Ok(Some(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    /// SIGKILL the init (and with it the whole pid namespace). Idempotent;
    /// failures (already reaped) are ignored.
    pub fn kill(&self) {
        if let Err(err) = process::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL) {
            tracing::trace!(sandbox = self.id, ?err, "kill");
        }
    }

    /// How the init (the reaper, pid 1 of the sandbox) ended: the
    /// runtime's exit code, 128 + S when signal S killed the runtime, or
    /// the failed step's code (see [`super::Step`]). Reaps pid 1 without
    /// blocking on the first call after it exited and remembers the
    /// answer. `None` while it runs.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        if self.status.get().is_none() {
            match process::pidfd_wait(self.pidfd.as_fd(), true) {
                Ok(status) => self.status.set(status),
                Err(err) => tracing::trace!(sandbox = self.id, ?err, "reap"),
            }
        }
        self.status.get()
    }

    /// Whether the seccomp policy killed the runtime's process: a
    /// never-legitimate system call ends it with SIGSYS (KILL_PROCESS), and
    /// the reaper (pid 1) exits with 128 + SIGSYS. (The runtime could end
    /// with that code itself: it only mislabels its own crash.) A SIGSYS of
    /// pid 1 itself counts too.
    pub fn killed_by_policy(&self) -> bool {
        match self.exit_status() {
            Some(ExitStatus::Signaled(signal)) => signal == libc::SIGSYS,
            Some(ExitStatus::Exited(code)) => code == SIGNALED_EXIT_BASE + libc::SIGSYS,
            None => false,
        }
    }

    pub fn memory_report(&self) -> MemoryReport {
        self.cgroup
            .as_ref()
            .map(SandboxCgroup::memory_report)
            .unwrap_or_default()
    }

    /// Kill, reap through the pidfd and remove the cgroup: nothing of the
    /// sandbox is left.
    pub fn destroy(mut self) -> Result<(), SandboxError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), SandboxError> {
        let Some(cgroup) = self.cgroup.take() else {
            return Ok(());
        };
        self.kill();
        match process::pidfd_wait(self.pidfd.as_fd(), false) {
            Ok(_) => {}
            // Reaped already (by whoever else waited on it).
            Err(err) if err.raw_os_error() == Some(libc::ECHILD) => {}
            Err(source) => {
                return Err(SandboxError::Reap {
                    id: self.id,
                    pid: self.pid,
                    source,
                })
            }
        }
        if let Err(err) = std::fs::remove_file(&self.log) {
            // Gone with the instance's log directory when the environment
            // was dropped first.
            if err.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(sandbox = self.id, log = %self.log.display(), %err, "remove the sandbox's log");
            }
        }
        // Gone already when the environment was dropped first (it removes
        // the whole instance).
        if cgroup.paths().iter().any(|dir| dir.exists()) {
            cgroup.kill_all()?;
            cgroup.remove()?;
        }
        tracing::debug!(sandbox = self.id, pid = self.pid, "sandbox destroyed");
        Ok(())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(err) = self.teardown() {
            tracing::warn!(sandbox = self.id, %err, "tear down dropped sandbox");
        }
    }
}
