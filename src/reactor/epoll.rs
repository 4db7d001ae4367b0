//! The epoll backend: completions emulated on readiness (mio, edge
//! triggered).
//!
//! Each fd with pending ops is registered once for readable|writable and
//! keeps its ops in submission order. An op is tried at submit (the fd may
//! already be ready, and an edge-triggered epoll would not say so again)
//! and then on every event of its fd; an op that gets `EAGAIN` waits for
//! the next edge. After each attempt round every op on the fd has either
//! completed or seen `EAGAIN`, so no edge is lost.
//!
//! Reads and writes use `RWF_NOWAIT` (preadv2/pwritev2), which makes one
//! call nonblocking without setting `O_NONBLOCK` on the open file
//! description: a doorbell eventfd is shared with a forked sandbox, whose
//! blocking reads must stay blocking. Only files without `RWF_NOWAIT`
//! support, and listeners, get `O_NONBLOCK`. Regular files (which epoll
//! refuses) are read and written directly. The fd is deregistered
//! when its last op leaves, while the reactor still holds it open, so a
//! later fd with the same number starts from a clean registration.
//! Timers are a heap of deadlines that bounds the `epoll_wait` timeout.

#![deny(unsafe_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::{Completion, Op, Token};
use crate::sys::uring::fallback::{
    accept_nonblocking, read_spare, read_spare_nowait, write_nowait,
};

/// An op waiting in the reactor.
#[derive(Debug)]
struct Pending {
    /// Tells this op's heap entry from a stale one of a reused token.
    generation: u64,
    kind: PendingKind,
}

#[derive(Debug)]
enum PendingKind {
    /// Waiting on its fd (`Op::Timeout` never is).
    Fd(Op),
    Timer,
}

/// The ops waiting on one registered fd, oldest first.
#[derive(Debug)]
struct Waiters {
    fd: Rc<OwnedFd>,
    tokens: Vec<Token>,
}

#[derive(Debug)]
pub struct EpollReactor {
    poll: Poll,
    events: Events,
    ops: HashMap<Token, Pending>,
    /// Keyed by the mio token, which is the fd number.
    fds: HashMap<mio::Token, Waiters>,
    timers: BinaryHeap<Reverse<(Instant, u64, Token)>>,
    next_generation: u64,
    ready: VecDeque<Completion>,
}

/// The outcome of one nonblocking attempt.
enum Attempt {
    Done(Completion),
    WouldBlock(Op),
}

impl EpollReactor {
    pub fn new() -> io::Result<EpollReactor> {
        Ok(EpollReactor {
            poll: Poll::new()?,
            events: Events::with_capacity(256),
            ops: HashMap::new(),
            fds: HashMap::new(),
            timers: BinaryHeap::new(),
            next_generation: 0,
            ready: VecDeque::new(),
        })
    }

    pub fn submit(&mut self, token: Token, op: Op) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let op = match op {
            Op::Timeout { after } => {
                let deadline = Instant::now() + after;
                self.timers.push(Reverse((deadline, generation, token)));
                self.insert(token, generation, PendingKind::Timer);
                return;
            }
            op => op,
        };
        let fd = Rc::clone(op_fd(&op));
        let key = mio::Token(fd.as_raw_fd() as usize);
        if !self.fds.contains_key(&key) && matches!(op, Op::Accept { .. }) {
            if let Err(err) = set_nonblocking(&fd) {
                let done = Completion::failed(token, err, op_buf(op));
                return self.ready.push_back(done);
            }
        }
        let op = match attempt(token, op) {
            Attempt::Done(done) => return self.ready.push_back(done),
            Attempt::WouldBlock(op) => op,
        };
        if !self.fds.contains_key(&key) {
            let interest = Interest::READABLE | Interest::WRITABLE;
            let raw = fd.as_raw_fd();
            let registry = self.poll.registry();
            match registry.register(&mut SourceFd(&raw), key, interest) {
                Ok(()) => {}
                // A regular file: epoll refuses it, and it is always ready.
                Err(err) if err.raw_os_error() == Some(libc::EPERM) => {
                    return self.ready.push_back(blocking(token, op));
                }
                Err(err) => {
                    let done = Completion::failed(token, err, op_buf(op));
                    return self.ready.push_back(done);
                }
            }
            let tokens = Vec::new();
            self.fds.insert(key, Waiters { fd, tokens });
        }
        self.fds
            .get_mut(&key)
            .expect("registered")
            .tokens
            .push(token);
        self.insert(token, generation, PendingKind::Fd(op));
    }

    fn insert(&mut self, token: Token, generation: u64, kind: PendingKind) {
        if self
            .ops
            .insert(token, Pending { generation, kind })
            .is_some()
        {
            tracing::error!(token, "reactor token reused while in flight");
        }
    }

    pub fn cancel(&mut self, token: Token) {
        let Some(pending) = self.ops.remove(&token) else {
            return;
        };
        let buf = match pending.kind {
            PendingKind::Timer => None,
            PendingKind::Fd(op) => {
                let key = mio::Token(op_fd(&op).as_raw_fd() as usize);
                self.forget(key, token);
                op_buf(op)
            }
        };
        self.ready.push_back(Completion::cancelled(token, buf));
    }

    /// Remove `token` from the waiters of `key`; deregister the fd when
    /// it was the last one.
    fn forget(&mut self, key: mio::Token, token: Token) {
        let Some(waiters) = self.fds.get_mut(&key) else {
            return;
        };
        waiters.tokens.retain(|t| *t != token);
        if waiters.tokens.is_empty() {
            let waiters = self.fds.remove(&key).expect("present");
            let raw = waiters.fd.as_raw_fd();
            if let Err(err) = self.poll.registry().deregister(&mut SourceFd(&raw)) {
                tracing::warn!(fd = raw, ?err, "epoll deregister failed");
            }
        }
    }

    pub fn wait(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> io::Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let now = Instant::now();
            let mut left = deadline.map(|d| d.saturating_duration_since(now));
            if let Some(next) = self.next_timer() {
                let until = next.saturating_duration_since(now);
                left = Some(left.map_or(until, |l| l.min(until)));
            }
            if !self.ready.is_empty() {
                left = Some(Duration::ZERO);
            }
            let interrupted = match self.poll.poll(&mut self.events, left) {
                Ok(()) => false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => true,
                Err(err) => return Err(err),
            };
            let keys: Vec<mio::Token> = self.events.iter().map(|e| e.token()).collect();
            for key in keys {
                self.on_ready(key);
            }
            self.fire_timers();
            let done = !self.ready.is_empty();
            out.extend(self.ready.drain(..));
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            if done || interrupted || expired {
                return Ok(());
            }
        }
    }

    pub fn in_flight(&self) -> usize {
        self.ops.len() + self.ready.len()
    }

    /// Try every op waiting on the fd behind `key`, oldest first.
    fn on_ready(&mut self, key: mio::Token) {
        let Some(waiters) = self.fds.get(&key) else {
            return; // deregistered earlier in this batch
        };
        for token in waiters.tokens.clone() {
            let Some(pending) = self.ops.remove(&token) else {
                continue;
            };
            let PendingKind::Fd(op) = pending.kind else {
                unreachable!("timers wait on no fd");
            };
            match attempt(token, op) {
                Attempt::Done(done) => {
                    self.ready.push_back(done);
                    self.forget(key, token);
                }
                Attempt::WouldBlock(op) => {
                    let kind = PendingKind::Fd(op);
                    self.ops.insert(token, Pending { kind, ..pending });
                }
            }
        }
    }

    /// Earliest live deadline, dropping heap entries of cancelled timers.
    fn next_timer(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, generation, token))) = self.timers.peek().copied() {
            if self.is_live_timer(token, generation) {
                return Some(deadline);
            }
            self.timers.pop();
        }
        None
    }

    fn is_live_timer(&self, token: Token, generation: u64) -> bool {
        self.ops
            .get(&token)
            .is_some_and(|p| p.generation == generation)
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((deadline, generation, token))) = self.timers.peek().copied() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            if self.is_live_timer(token, generation) {
                self.ops.remove(&token);
                self.ready.push_back(Completion {
                    token,
                    result: Ok(0),
                    buf: None,
                    accepted: None,
                });
            }
        }
    }
}

/// The fd of an fd op.
fn op_fd(op: &Op) -> &Rc<OwnedFd> {
    match op {
        Op::Accept { fd }
        | Op::Read { fd, .. }
        | Op::Write { fd, .. }
        | Op::PollReadable { fd } => fd,
        Op::Timeout { .. } => unreachable!("timeouts have no fd"),
    }
}

/// The buffer an op hands back in its completion.
fn op_buf(op: Op) -> Option<Vec<u8>> {
    match op {
        Op::Read { buf, .. } | Op::Write { buf, .. } => Some(buf),
        _ => None,
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    if !flags.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    }
    Ok(())
}

/// Run `op`'s syscall without blocking (retrying `EINTR`).
fn attempt(token: Token, mut op: Op) -> Attempt {
    loop {
        let (result, accepted) = try_once(&mut op);
        match result {
            Err(err) if retry(&err) => continue,
            Err(err) if would_block(&err) => return Attempt::WouldBlock(op),
            result => {
                return Attempt::Done(Completion {
                    token,
                    result,
                    buf: op_buf(op),
                    accepted,
                })
            }
        }
    }
}

fn try_once(op: &mut Op) -> (io::Result<usize>, Option<OwnedFd>) {
    match op {
        Op::Accept { fd } => match accept_nonblocking(fd.as_fd()) {
            Ok(socket) => (Ok(0), Some(socket)),
            Err(err) => (Err(err), None),
        },
        Op::Read { fd, buf } => match read_spare_nowait(fd.as_fd(), buf) {
            Err(err) if unsupported(&err) => match set_nonblocking(fd) {
                Ok(()) => (read_spare(fd.as_fd(), buf), None),
                Err(err) => (Err(err), None),
            },
            result => (result, None),
        },
        Op::Write { fd, buf, offset } => match buf.get(*offset..) {
            Some(rest) => match write_nowait(fd.as_fd(), rest) {
                Err(err) if unsupported(&err) => match set_nonblocking(fd) {
                    Ok(()) => (write(fd, rest), None),
                    Err(err) => (Err(err), None),
                },
                result => (result, None),
            },
            None => (Err(offset_past_end()), None),
        },
        Op::PollReadable { fd } => {
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
                Ok(0) => (Err(Errno::EAGAIN.into()), None),
                Ok(_) => (Ok(0), None),
                Err(errno) => (Err(errno.into()), None),
            }
        }
        Op::Timeout { .. } => unreachable!("timeouts are not attempted"),
    }
}

/// Run a read or write that epoll cannot wait for (a regular file) the
/// plain, possibly blocking way.
fn blocking(token: Token, mut op: Op) -> Completion {
    let result = match &mut op {
        Op::Read { fd, buf } => read_spare(fd.as_fd(), buf),
        Op::Write { fd, buf, offset } => match buf.get(*offset..) {
            Some(rest) => write(fd, rest),
            None => Err(offset_past_end()),
        },
        _ => Err(io::Error::from_raw_os_error(libc::EPERM)),
    };
    Completion {
        token,
        result,
        buf: op_buf(op),
        accepted: None,
    }
}

fn write(fd: &OwnedFd, data: &[u8]) -> io::Result<usize> {
    nix::unistd::write(fd, data).map_err(io::Error::from)
}

fn offset_past_end() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "write offset past end")
}

/// The file cannot do per-call nonblocking I/O (`RWF_NOWAIT`).
fn unsupported(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EOPNOTSUPP)
}

fn retry(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
}

fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}
