//! The io_uring backend: each op is one SQE whose `user_data` is a slab key
//! of [`Ring`], which owns the op's resources until its CQE.

#![deny(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::{Duration, Instant};

use super::{Completion, Op, Token};
use crate::sys::uring::{Ring, RingCompletion, RingOp};

/// Submission queue size; the completion queue is four times larger and
/// the kernel keeps overflowing CQEs (IORING_FEAT_NODROP) beyond that.
const RING_ENTRIES: u32 = 256;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Accept,
    Read,
    Write,
    PollReadable,
    Timeout,
}

/// An in-flight op as the reactor sees it.
#[derive(Debug)]
struct InFlight {
    key: u64,
    kind: Kind,
}

#[derive(Debug)]
pub struct UringReactor {
    ring: Ring,
    by_token: HashMap<Token, InFlight>,
    /// Completions made without the kernel (push failures).
    ready: VecDeque<Completion>,
}

impl UringReactor {
    pub fn new() -> io::Result<UringReactor> {
        Ok(UringReactor {
            ring: Ring::new(RING_ENTRIES)?,
            by_token: HashMap::new(),
            ready: VecDeque::new(),
        })
    }

    pub fn submit(&mut self, token: Token, op: Op) {
        let (kind, ring_op) = match op {
            Op::Accept { fd } => (Kind::Accept, RingOp::Accept { fd }),
            Op::Read { fd, buf } => (Kind::Read, RingOp::Read { fd, buf }),
            Op::Write { fd, buf, offset } => (Kind::Write, RingOp::Write { fd, buf, offset }),
            Op::PollReadable { fd } => (Kind::PollReadable, RingOp::PollIn { fd }),
            Op::Timeout { after } => (Kind::Timeout, RingOp::Timeout { after }),
        };
        match self.ring.push(token, ring_op) {
            Ok(key) => {
                if self
                    .by_token
                    .insert(token, InFlight { key, kind })
                    .is_some()
                {
                    tracing::error!(token, "reactor token reused while in flight");
                }
            }
            Err((op, err)) => {
                tracing::debug!(token, ?err, "io_uring push failed");
                let buf = match op {
                    RingOp::Read { buf, .. } | RingOp::Write { buf, .. } => Some(buf),
                    _ => None,
                };
                self.ready.push_back(Completion::failed(token, err, buf));
            }
        }
    }

    pub fn cancel(&mut self, token: Token) {
        let Some(op) = self.by_token.get(&token) else {
            return;
        };
        if let Err(err) = self.ring.cancel(op.key) {
            // The op keeps running and will still complete on its own.
            tracing::warn!(token, ?err, "io_uring cancel could not be queued");
        }
    }

    pub fn wait(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> io::Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let before = out.len();
        loop {
            let left = match deadline {
                _ if !self.ready.is_empty() => Some(Duration::ZERO),
                None => None,
                Some(deadline) => Some(deadline.saturating_duration_since(Instant::now())),
            };
            let interrupted = match self.ring.submit_and_wait(left) {
                Ok(()) => false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => true,
                Err(err) => return Err(err),
            };
            out.extend(self.ready.drain(..));
            while let Some(done) = self.ring.pop() {
                out.push(self.complete(done));
            }
            // Only cancel CQEs may have arrived: wait again for a real one.
            if out.len() > before || interrupted || left == Some(Duration::ZERO) {
                return Ok(());
            }
        }
    }

    pub fn in_flight(&self) -> usize {
        self.by_token.len() + self.ready.len()
    }

    fn complete(&mut self, done: RingCompletion) -> Completion {
        let kind = match self.by_token.get(&done.tag) {
            Some(op) if op.key == done.key => {
                let kind = op.kind;
                self.by_token.remove(&done.tag);
                kind
            }
            _ => {
                tracing::error!(token = done.tag, "io_uring completion without a token");
                Kind::Read
            }
        };
        let result = match (kind, done.res) {
            (Kind::Timeout, res) if res == -libc::ETIME => Ok(0),
            (_, res) if res < 0 => Err(io::Error::from_raw_os_error(-res)),
            (Kind::Accept | Kind::PollReadable | Kind::Timeout, _) => Ok(0),
            (Kind::Read | Kind::Write, res) => Ok(res as usize),
        };
        Completion {
            token: done.tag,
            result,
            buf: done.buf,
            accepted: done.accepted,
        }
    }
}
