//! The daemon's event loop: a completion-style reactor on io_uring, or on
//! epoll through mio where io_uring is refused.
//!
//! The caller [`Reactor::submit`]s an [`Op`] under a [`Token`] of its own
//! choosing and later receives exactly one [`Completion`] for it from
//! [`Reactor::wait`], even when it [`Reactor::cancel`]s the op. Until that
//! completion the reactor owns the op's buffer and an `Rc` clone of its fd,
//! so neither can be freed or closed under the kernel (monoio's lifecycle
//! idea); the completion hands the buffer back and drops the fd clone.
//!
//! # How the backends map ops
//!
//! | [`Op`]         | io_uring (`uring.rs`)                    | epoll (`epoll.rs`), tried at submit and on readiness |
//! |----------------|------------------------------------------|------------------------------------------------------|
//! | `Accept`       | `IORING_OP_ACCEPT`, nonblocking+cloexec  | `accept4(SOCK_NONBLOCK\|SOCK_CLOEXEC)`               |
//! | `Read`         | `IORING_OP_READ` into spare capacity     | `preadv2(RWF_NOWAIT)` into spare capacity            |
//! | `Write`        | `IORING_OP_WRITE` of `buf[offset..]`     | `pwritev2(RWF_NOWAIT)` of `buf[offset..]`            |
//! | `PollReadable` | `IORING_OP_POLL_ADD` (`POLLIN`)          | `poll(2)` with a zero timeout                        |
//! | `Timeout`      | `IORING_OP_TIMEOUT` (`-ETIME`: fired)    | deadline heap that bounds `epoll_wait`               |
//! | `cancel`       | `IORING_OP_ASYNC_CANCEL`                 | drop the op, `ECANCELED` at the next `wait`          |
//!
//! Both backends report the same results: `Accept`, `PollReadable` and
//! `Timeout` complete with `Ok(0)`; `Read` and `Write` with the byte count.
//! The epoll backend tries each fd op at submit and then on every
//! (edge-triggered) readiness event of its fd. It reads and writes with
//! `RWF_NOWAIT`, leaving the fds' `O_NONBLOCK` flag (shared with forked
//! sandboxes) alone; it sets `O_NONBLOCK` only on listeners it accepts on
//! and on files that lack `RWF_NOWAIT` support.
//!
//! # Reserved tokens
//!
//! Caller tokens are free-form: the io_uring `user_data` of an op is a slab
//! key, never the token. The reserved `user_data` values are
//! [`USER_DATA_CANCEL`] (the `AsyncCancel` SQEs) and [`USER_DATA_PROBE`]
//! (the NOP of the start-up probe); their CQEs are consumed internally.
//!
//! # Caller rules
//!
//! A token must be unique among in-flight ops, and an op is in flight until
//! its completion is returned by `wait`, cancelled or not. A `Read` needs
//! spare capacity (`buf.capacity() > buf.len()`); with none it completes
//! `Ok(0)`, which looks like EOF. Writing to a closed socket raises
//! `SIGPIPE`, which Rust programs ignore by default.

#![deny(unsafe_code)]

mod epoll;
#[cfg(test)]
mod tests;
mod uring;

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::str::FromStr;
use std::time::Duration;

pub use crate::sys::uring::{USER_DATA_CANCEL, USER_DATA_PROBE};

/// Chosen by the caller, unique among its in-flight ops.
pub type Token = u64;

/// Which kernel interface drives the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Uring,
    Epoll,
}

impl Backend {
    /// The name used by `--reactor` and in logs: `"uring"` or `"epoll"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Uring => "uring",
            Backend::Epoll => "epoll",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend name that is neither `uring` nor `epoll`.
#[derive(Debug, thiserror::Error)]
#[error("unknown reactor backend {0:?} (expected \"uring\" or \"epoll\")")]
pub struct UnknownBackend(pub String);

impl FromStr for Backend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Backend, UnknownBackend> {
        match s {
            "uring" => Ok(Backend::Uring),
            "epoll" => Ok(Backend::Epoll),
            other => Err(UnknownBackend(other.to_owned())),
        }
    }
}

/// One operation. The reactor keeps the fd (an `Rc` clone) and the buffer
/// until the op's [`Completion`].
#[derive(Debug)]
pub enum Op {
    /// Completes with the accepted socket (`O_NONBLOCK | O_CLOEXEC`) in
    /// [`Completion::accepted`] and `Ok(0)`.
    Accept { fd: Rc<OwnedFd> },
    /// read(2) into `buf[len..capacity]`; on success `buf.len()` grows by
    /// `n` and the result is `Ok(n)`, `n == 0` meaning EOF.
    Read { fd: Rc<OwnedFd>, buf: Vec<u8> },
    /// write(2) of `buf[offset..]`; `Ok(bytes written)`, possibly partial
    /// (the caller re-submits the rest).
    Write {
        fd: Rc<OwnedFd>,
        buf: Vec<u8>,
        offset: usize,
    },
    /// Completes `Ok(0)` once `fd` is readable (a pidfd: the child exited).
    PollReadable { fd: Rc<OwnedFd> },
    /// Completes `Ok(0)` after the duration.
    Timeout { after: Duration },
}

/// The one result of one submitted op.
#[derive(Debug)]
pub struct Completion {
    pub token: Token,
    /// `ECANCELED` after [`Reactor::cancel`] unless the op raced to finish.
    pub result: io::Result<usize>,
    /// The buffer of a `Read` or `Write`, handed back in every outcome.
    pub buf: Option<Vec<u8>>,
    /// The socket an `Accept` produced.
    pub accepted: Option<OwnedFd>,
}

impl Completion {
    fn failed(token: Token, err: io::Error, buf: Option<Vec<u8>>) -> Completion {
        Completion {
            token,
            result: Err(err),
            buf,
            accepted: None,
        }
    }

    fn cancelled(token: Token, buf: Option<Vec<u8>>) -> Completion {
        Completion::failed(token, io::Error::from_raw_os_error(libc::ECANCELED), buf)
    }
}

/// The event loop of the single-threaded daemon.
#[derive(Debug)]
pub struct Reactor {
    inner: Inner,
}

// One reactor per daemon: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Inner {
    Uring(uring::UringReactor),
    Epoll(epoll::EpollReactor),
}

impl Reactor {
    /// Build the reactor. With `force == None`, probe io_uring (ring, NOP,
    /// opcode probe) and fall back to epoll when it is refused or lacking;
    /// with `Some(backend)`, use that backend or fail.
    pub fn new(force: Option<Backend>) -> io::Result<Reactor> {
        let inner = match force {
            Some(Backend::Uring) => Inner::Uring(uring::UringReactor::new()?),
            Some(Backend::Epoll) => Inner::Epoll(epoll::EpollReactor::new()?),
            None => match uring::UringReactor::new() {
                Ok(ring) => Inner::Uring(ring),
                Err(err) => {
                    tracing::info!(?err, "io_uring unavailable; falling back to epoll");
                    Inner::Epoll(epoll::EpollReactor::new()?)
                }
            },
        };
        let reactor = Reactor { inner };
        tracing::info!(backend = %reactor.backend(), forced = force.is_some(), "reactor ready");
        Ok(reactor)
    }

    /// Which backend runs.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Uring(_) => Backend::Uring,
            Inner::Epoll(_) => Backend::Epoll,
        }
    }

    /// Start `op` under `token`. Never fails here: an error (bad fd,
    /// queue full) comes back as the op's [`Completion`].
    pub fn submit(&mut self, token: Token, op: Op) {
        match &mut self.inner {
            Inner::Uring(r) => r.submit(token, op),
            Inner::Epoll(r) => r.submit(token, op),
        }
    }

    /// Cancel the in-flight op `token` (no effect on unknown tokens). It
    /// completes with `ECANCELED`, or with its real result if it raced.
    pub fn cancel(&mut self, token: Token) {
        match &mut self.inner {
            Inner::Uring(r) => r.cancel(token),
            Inner::Epoll(r) => r.cancel(token),
        }
    }

    /// Block until at least one completion or until `timeout` (`None`:
    /// forever) and append what completed to `out`. A signal ends the wait
    /// early without error.
    pub fn wait(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> io::Result<()> {
        match &mut self.inner {
            Inner::Uring(r) => r.wait(out, timeout),
            Inner::Epoll(r) => r.wait(out, timeout),
        }
    }

    /// Number of ops submitted whose completion has not been returned.
    pub fn in_flight(&self) -> usize {
        match &self.inner {
            Inner::Uring(r) => r.in_flight(),
            Inner::Epoll(r) => r.in_flight(),
        }
    }
}
