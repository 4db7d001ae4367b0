//! The sandbox's pid 1 once confined: [`start`] forks the runtime and
//! stays behind as a minimal init, `sprout:init[ID]`, that
//!
//! - reaps every process of the sandbox that exits, so double-forked
//!   daemons and other orphans of a handler never pile up as zombies
//!   against `pids.max`;
//! - drains the runtime's stdout and stderr (fds 1 and 2 of the runtime
//!   are the write end of a pipe) into the sandbox's log, fd 7, capped at
//!   [`LOG_CAP`](super::output::LOG_CAP); it reads continuously, so output
//!   never blocks the runtime;
//! - exits when the runtime does, with the runtime's exit code, or 128 + S
//!   when a signal S killed it (the daemon reads SIGSYS, a seccomp kill,
//!   from that). Its exit takes the whole pid namespace with it.
//!
//! Both processes are fully confined: `confine` ran before the fork. The
//! reaper installs the runtime's own seccomp filter too, is not dumpable
//! (tenant processes of the same uid cannot open its memory or its fds
//! through /proc), and holds only stderr, the log and the pipe's read end.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus};

use super::config::{fds, InitConfig};
use super::confine::{ConfineError, Step};
use super::output::CappedLog;
use super::runtime;
use crate::sys::process;

/// The exit code of pid 1 when a signal S killed the runtime is this + S.
pub const SIGNALED_EXIT_BASE: i32 = 128;

/// How much the reaper reads at once.
const CHUNK: usize = 64 * 1024;

/// After the runtime exited: at most this many reads of what is left in
/// the pipe (a grandchild that keeps writing cannot keep pid 1 alive).
const FINAL_READS: usize = 64;

/// Fork the runtime; returns only on failure (in the runtime's process,
/// when its start failed).
pub fn start(config: &InitConfig, env: Vec<String>) -> ConfineError {
    let (read, write) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(pipe) => pipe,
        Err(e) => return ConfineError::new(Step::Fork, "create the output pipe", e.into()),
    };
    match process::fork_single_threaded() {
        Err(e) => ConfineError::new(Step::Fork, "fork the runtime", e),
        Ok(None) => {
            drop(read);
            match runtime_stdio(config, write) {
                Ok(()) => runtime::start(config, env),
                Err(err) => err,
            }
        }
        Ok(Some(runtime)) => {
            drop(write);
            match become_reaper(config) {
                Ok(log) => reap(runtime, read, log),
                Err(err) => err,
            }
        }
    }
}

/// In the runtime's process: stdout (and stderr) onto the pipe, then
/// nothing but 0-6.
fn runtime_stdio(config: &InitConfig, pipe: OwnedFd) -> Result<(), ConfineError> {
    let err = |what: &str, e: Errno| ConfineError::new(Step::Fork, what.to_owned(), e.into());
    nix::unistd::dup2_stdout(&pipe).map_err(|e| err("dup2 the output pipe onto fd 1", e))?;
    if !config.keep_stderr {
        nix::unistd::dup2_stderr(&pipe).map_err(|e| err("dup2 the output pipe onto fd 2", e))?;
    }
    drop(pipe);
    process::close_from(fds::LOG)
        .map_err(|e| ConfineError::new(Step::CloseFds, "close_range(7, ~0) in the runtime", e))
}

fn become_reaper(config: &InitConfig) -> Result<CappedLog, ConfineError> {
    let err = |what: &str, e: std::io::Error| ConfineError::new(Step::Reap, what.to_owned(), e);
    let mut name = format!("sprout:init[{}]", config.id);
    name.truncate(15);
    let name = std::ffi::CString::new(name).unwrap_or_default();
    nix::sys::prctl::set_name(&name).map_err(|e| err("prctl(PR_SET_NAME)", e.into()))?;
    nix::sys::prctl::set_dumpable(false).map_err(|e| err("prctl(PR_SET_DUMPABLE, 0)", e.into()))?;
    // Past a small RLIMIT_FSIZE a write fails with EFBIG instead.
    process::ignore_signal(Signal::SIGXFSZ).map_err(|e| err("ignore SIGXFSZ", e))?;
    process::catch_blocked(Signal::SIGCHLD).map_err(|e| err("catch SIGCHLD", e))?;
    let log = crate::sys::fd::inherited(fds::LOG).map_err(|e| err("take the log (fd 7)", e))?;
    runtime::apply_seccomp(config)?;
    // Last, so a failure above still reaches the daemon on fd 6.
    process::close_range(0, 1)
        .and_then(|()| process::close_range(3, 6))
        .map_err(|e| err("close the runtime's descriptors", e))?;
    Ok(CappedLog::new(File::from(log)))
}

/// The reaper's loop; ends the process when the runtime exits.
fn reap(runtime: i32, pipe: OwnedFd, mut log: CappedLog) -> ConfineError {
    if let Err(e) = nix::fcntl::fcntl(&pipe, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)) {
        return ConfineError::new(Step::Reap, "make the output pipe non-blocking", e.into());
    }
    let mut pipe = Some(File::from(pipe));
    let mut buf = vec![0u8; CHUNK];
    loop {
        if let Some(code) = reap_exited(runtime) {
            if let Some(pipe) = pipe.as_mut() {
                for _ in 0..FINAL_READS {
                    if drain_once(pipe, &mut buf, &mut log) != Drained::More {
                        break;
                    }
                }
            }
            log.note();
            std::process::exit(code);
        }
        let readable = match wait_for(pipe.as_ref()) {
            Ok(readable) => readable,
            Err(e) => return ConfineError::new(Step::Reap, "ppoll", e.into()),
        };
        let Some(open) = pipe.as_mut().filter(|_| readable) else {
            continue;
        };
        match drain_once(open, &mut buf, &mut log) {
            Drained::More => {}
            Drained::Dry => log.note(),
            Drained::Closed => {
                log.note();
                pipe = None;
            }
        }
    }
}

/// Reap every process of the sandbox that has exited; the exit code for
/// pid 1 once the runtime is among them.
fn reap_exited(runtime: i32) -> Option<i32> {
    let flags = WaitPidFlag::WNOHANG | WaitPidFlag::__WALL;
    loop {
        match nix::sys::wait::waitpid(None, Some(flags)) {
            Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == runtime => return Some(code),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid.as_raw() == runtime => {
                return Some(SIGNALED_EXIT_BASE + signal as i32)
            }
            // Nothing (more) has exited.
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            // An orphan or a child of the runtime's: reaped, nothing else to do.
            Ok(_) => {}
        }
    }
}

/// Block until the pipe is readable (`Ok(true)`) or a SIGCHLD arrived
/// (`Ok(false)`): SIGCHLD is blocked except during this wait, so none is
/// missed between [`reap_exited`] and here.
fn wait_for(pipe: Option<&File>) -> nix::Result<bool> {
    let mut fds: Vec<PollFd> = pipe
        .map(|p| PollFd::new(p.as_fd(), PollFlags::POLLIN))
        .into_iter()
        .collect();
    match nix::poll::ppoll(&mut fds, None, Some(SigSet::empty())) {
        Ok(_) => Ok(fds.first().and_then(PollFd::any).unwrap_or(false)),
        Err(Errno::EINTR) => Ok(false),
        Err(e) => Err(e),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Drained {
    /// A full buffer: there may be more.
    More,
    /// The pipe is empty for now.
    Dry,
    /// Every writer is gone.
    Closed,
}

fn drain_once(pipe: &mut File, buf: &mut [u8], log: &mut CappedLog) -> Drained {
    match pipe.read(buf) {
        Ok(0) => Drained::Closed,
        Ok(n) => {
            log.push(&buf[..n]);
            if n == buf.len() {
                Drained::More
            } else {
                Drained::Dry
            }
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => Drained::Dry,
        Err(e) if e.kind() == ErrorKind::Interrupted => Drained::More,
        Err(_) => Drained::Closed,
    }
}
