//! Per-function queues and placement.
//!
//! Invocations of a function wait in its queue; idle sandboxes of that
//! function *pull* from it (no invocation is ever pushed to a busy
//! sandbox). The queue's depth against the sandboxes already idle or
//! starting decides how many more to start, up to the function's
//! concurrency limit. This module is pure bookkeeping: the daemon carries
//! out what it decides.

#![deny(unsafe_code)]

use std::collections::VecDeque;

/// Identifies an invocation inside one daemon.
pub type InvocationId = u64;
/// Identifies a sandbox inside one daemon.
pub type SandboxId = u64;

/// The queue was full: the invocation is refused at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("function queue is full ({limit} invocations waiting)")]
pub struct Throttled {
    pub limit: usize,
}

/// One function version's pending invocations and sandboxes.
#[derive(Debug)]
pub struct FunctionQueue {
    pending: VecDeque<InvocationId>,
    idle: Vec<SandboxId>,
    /// Sandboxes assigned to this function that have not finished their
    /// init yet (including ones still booting for it).
    starting: usize,
    /// Every sandbox of this function: starting, idle or busy.
    live: usize,
    concurrency: usize,
    max_queue: usize,
}

impl FunctionQueue {
    pub const DEFAULT_CONCURRENCY: usize = 10;
    pub const DEFAULT_MAX_QUEUE: usize = 100;

    pub fn new(concurrency: usize, max_queue: usize) -> FunctionQueue {
        FunctionQueue {
            pending: VecDeque::new(),
            idle: Vec::new(),
            starting: 0,
            live: 0,
            concurrency: concurrency.max(1),
            max_queue,
        }
    }

    /// Queue an invocation, or refuse it when the queue is full.
    pub fn enqueue(&mut self, invocation: InvocationId) -> Result<(), Throttled> {
        if self.pending.len() >= self.max_queue {
            return Err(Throttled {
                limit: self.max_queue,
            });
        }
        self.pending.push_back(invocation);
        Ok(())
    }

    /// Take an invocation out of the queue wherever it is (its deadline
    /// passed); `false` when it was not queued.
    pub fn withdraw(&mut self, invocation: InvocationId) -> bool {
        let before = self.pending.len();
        self.pending.retain(|&i| i != invocation);
        self.pending.len() != before
    }

    /// Empty the queue (the function is going away).
    pub fn drain_pending(&mut self) -> Vec<InvocationId> {
        self.pending.drain(..).collect()
    }

    /// Pair the oldest queued invocation with an idle sandbox, if both exist.
    pub fn next_dispatch(&mut self) -> Option<(InvocationId, SandboxId)> {
        if self.pending.is_empty() {
            return None;
        }
        let sandbox = self.idle.pop()?;
        let invocation = self.pending.pop_front()?;
        Some((invocation, sandbox))
    }

    /// How many more sandboxes to start now: queued invocations beyond the
    /// ones already starting, within the concurrency limit.
    pub fn wanted_starts(&self) -> usize {
        let uncovered = self.pending.len().saturating_sub(self.starting);
        let room = self.concurrency.saturating_sub(self.live);
        uncovered.min(room)
    }

    /// A sandbox was set up for this function (pooled or new).
    pub fn sandbox_starting(&mut self) {
        self.starting += 1;
        self.live += 1;
    }

    /// A starting sandbox finished its init and is idle.
    pub fn sandbox_ready(&mut self, sandbox: SandboxId) {
        self.starting = self.starting.saturating_sub(1);
        self.idle.push(sandbox);
    }

    /// A busy sandbox finished its invocation and pulls again.
    pub fn sandbox_idle(&mut self, sandbox: SandboxId) {
        self.idle.push(sandbox);
    }

    /// A sandbox of this function is gone; `was_starting` when it died
    /// before finishing its init.
    pub fn sandbox_gone(&mut self, sandbox: SandboxId, was_starting: bool) {
        if was_starting {
            self.starting = self.starting.saturating_sub(1);
        }
        self.idle.retain(|&s| s != sandbox);
        self.live = self.live.saturating_sub(1);
    }

    /// Take every idle sandbox (to retire them).
    pub fn take_idle(&mut self) -> Vec<SandboxId> {
        std::mem::take(&mut self.idle)
    }

    pub fn queued(&self) -> usize {
        self.pending.len()
    }

    pub fn live(&self) -> usize {
        self.live
    }

    pub fn starting(&self) -> usize {
        self.starting
    }

    pub fn front(&self) -> Option<InvocationId> {
        self.pending.front().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_depth_drives_starts_within_concurrency() {
        let mut q = FunctionQueue::new(3, 10);
        assert_eq!(q.wanted_starts(), 0);
        for i in 0..5 {
            q.enqueue(i).unwrap();
        }
        assert_eq!(q.wanted_starts(), 3, "bounded by concurrency");
        q.sandbox_starting();
        q.sandbox_starting();
        assert_eq!(q.wanted_starts(), 1);
        q.sandbox_starting();
        assert_eq!(q.wanted_starts(), 0);
        assert_eq!(q.next_dispatch(), None, "nothing idle yet");

        q.sandbox_ready(100);
        assert_eq!(q.next_dispatch(), Some((0, 100)));
        assert_eq!(q.next_dispatch(), None, "busy sandboxes are not pushed to");
        q.sandbox_idle(100);
        assert_eq!(q.next_dispatch(), Some((1, 100)));
        assert_eq!(q.queued(), 3);
    }

    #[test]
    fn full_queue_throttles() {
        let mut q = FunctionQueue::new(1, 2);
        q.enqueue(1).unwrap();
        q.enqueue(2).unwrap();
        assert_eq!(q.enqueue(3), Err(Throttled { limit: 2 }));
        assert!(q.withdraw(1));
        assert!(!q.withdraw(1));
        q.enqueue(3).unwrap();
        assert_eq!(q.drain_pending(), vec![2, 3]);
    }

    #[test]
    fn gone_sandboxes_free_room() {
        let mut q = FunctionQueue::new(1, 10);
        q.enqueue(1).unwrap();
        q.enqueue(2).unwrap();
        q.sandbox_starting();
        assert_eq!(q.wanted_starts(), 0);
        q.sandbox_gone(7, true);
        assert_eq!((q.live(), q.starting()), (0, 0));
        assert_eq!(q.wanted_starts(), 1);
        q.sandbox_starting();
        q.sandbox_ready(8);
        q.sandbox_gone(8, false);
        assert_eq!(q.next_dispatch(), None);
        assert_eq!(q.live(), 0);
    }
}
