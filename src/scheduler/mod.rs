//! Per-function queues and placement.
//!
//! Invocations of a function wait in its queue; idle sandboxes of that
//! function *pull* from it (no invocation is ever pushed to a busy
//! sandbox). The queue's depth against the sandboxes already idle or
//! starting decides how many more to start, up to the function's
//! concurrency limit.
//!
//! Affinity: an invocation with a key whose sandbox is alive waits for that
//! sandbox in particular (its *private* queue), even while others are idle.
//! A key without a live sandbox waits in the shared queue, and whichever
//! sandbox takes it becomes the key's. In strict mode a sandbox serves only
//! the first key it took: dedicated sandboxes never pull from the shared
//! queue, and invocations without a key are refused.
//!
//! This module is pure bookkeeping: the daemon carries out what it decides.

#![deny(unsafe_code)]

mod member;
mod samples;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

pub use samples::Samples;

use crate::protocol::AffinityMode;
use member::{Member, State, Waiting};

/// Identifies an invocation inside one daemon.
pub type InvocationId = u64;
/// Identifies a sandbox inside one daemon.
pub type SandboxId = u64;

/// Most affinity keys a shared function remembers at once; beyond that a
/// new key is served but not remembered (its next invocation is a miss).
pub const MAX_KEYS: usize = 65_536;

/// Why an invocation was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The queue is full: refused at once (like Lambda's 429).
    #[error("function queue is full ({limit} invocations waiting)")]
    Throttled { limit: usize },
    /// A strict-affinity function needs a key on every invocation.
    #[error("this function's affinity mode is strict: invocations need an affinity key")]
    KeyRequired,
}

/// An invocation paired with the sandbox that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispatch {
    pub invocation: InvocationId,
    pub sandbox: SandboxId,
    /// It carried a key and went to the sandbox that had that key.
    pub affinity_hit: bool,
}

/// One function version's pending invocations and sandboxes.
#[derive(Debug)]
pub struct FunctionQueue {
    /// The shared queue: invocations any eligible sandbox may take.
    pending: VecDeque<Waiting>,
    /// Idle sandboxes that pull from the shared queue; the most recently
    /// idle last, so the oldest ones age into the idle timeout.
    idle: Vec<SandboxId>,
    /// Idle sandboxes with invocations waiting for them in particular.
    hot: VecDeque<SandboxId>,
    members: HashMap<SandboxId, Member>,
    /// Affinity key → the sandbox that last served it.
    keys: HashMap<String, SandboxId>,
    /// Invocations waiting, shared and private.
    queued: usize,
    peak: usize,
    starting: usize,
    leaving: usize,
    concurrency: usize,
    max_queue: usize,
    mode: AffinityMode,
}

impl FunctionQueue {
    pub fn new(concurrency: usize, max_queue: usize, mode: AffinityMode) -> FunctionQueue {
        FunctionQueue {
            pending: VecDeque::new(),
            idle: Vec::new(),
            hot: VecDeque::new(),
            members: HashMap::new(),
            keys: HashMap::new(),
            queued: 0,
            peak: 0,
            starting: 0,
            leaving: 0,
            concurrency: concurrency.max(1),
            max_queue,
            mode,
        }
    }

    /// Queue an invocation, or refuse it (full queue; strict function
    /// without a key).
    pub fn enqueue(&mut self, id: InvocationId, key: Option<&str>) -> Result<(), Refused> {
        if key.is_none() && self.mode == AffinityMode::Strict {
            return Err(Refused::KeyRequired);
        }
        if self.queued >= self.max_queue {
            return Err(Refused::Throttled {
                limit: self.max_queue,
            });
        }
        let waiting = Waiting {
            id,
            key: key.map(str::to_owned),
        };
        match key.and_then(|k| self.keys.get(k).copied()) {
            Some(owner) => self.wait_for(owner, waiting),
            None => self.pending.push_back(waiting),
        }
        self.queued += 1;
        self.peak = self.peak.max(self.queued);
        Ok(())
    }

    /// Put an invocation in `owner`'s private queue; an idle owner becomes
    /// hot so the next dispatch takes it.
    fn wait_for(&mut self, owner: SandboxId, waiting: Waiting) {
        let member = self.members.get_mut(&owner).expect("keys name members");
        member.private.push_back(waiting);
        if matches!(member.state, State::Idle { .. }) && !self.hot.contains(&owner) {
            self.idle.retain(|&s| s != owner);
            self.hot.push_back(owner);
        }
    }

    /// Take an invocation out of the queue wherever it waits (its deadline
    /// passed); `false` when it was not queued.
    pub fn withdraw(&mut self, invocation: InvocationId) -> bool {
        let found = remove_from(&mut self.pending, invocation)
            || self
                .members
                .values_mut()
                .any(|m| remove_from(&mut m.private, invocation));
        if found {
            self.queued -= 1;
        }
        found
    }

    /// Empty every queue (the function is going away).
    pub fn drain_pending(&mut self) -> Vec<InvocationId> {
        let mut all: Vec<InvocationId> = self.pending.drain(..).map(|w| w.id).collect();
        for member in self.members.values_mut() {
            all.extend(member.private.drain(..).map(|w| w.id));
        }
        self.queued = 0;
        all
    }

    /// The next invocation to run and its sandbox: first the invocations
    /// waiting for a particular idle sandbox, then the shared queue.
    pub fn next_dispatch(&mut self) -> Option<Dispatch> {
        loop {
            if let Some(dispatch) = self.next_private() {
                return Some(dispatch);
            }
            if self.pending.is_empty() {
                return None;
            }
            let sandbox = self.idle.pop()?;
            let waiting = self.pending.pop_front().expect("not empty");
            if let Some(key) = &waiting.key {
                match self.keys.get(key).copied() {
                    // The key found a sandbox while this one waited: wait
                    // for that one instead.
                    Some(owner) if owner != sandbox => {
                        self.idle.push(sandbox);
                        self.wait_for(owner, waiting);
                        continue;
                    }
                    // Strict mode holds at most one key per sandbox; a
                    // shared function remembers at most MAX_KEYS of them.
                    _ if self.mode == AffinityMode::Strict || self.keys.len() < MAX_KEYS => {
                        self.keys.insert(key.clone(), sandbox);
                    }
                    _ => {}
                }
            }
            let member = self
                .members
                .get_mut(&sandbox)
                .expect("idle sandboxes are members");
            if self.mode == AffinityMode::Strict {
                member.dedicated = waiting.key.clone();
            }
            member.state = State::Busy;
            self.queued -= 1;
            return Some(Dispatch {
                invocation: waiting.id,
                sandbox,
                affinity_hit: false,
            });
        }
    }

    /// An idle sandbox with an invocation waiting for it in particular.
    fn next_private(&mut self) -> Option<Dispatch> {
        while let Some(sandbox) = self.hot.pop_front() {
            let member = self
                .members
                .get_mut(&sandbox)
                .expect("hot sandboxes are members");
            if let Some(waiting) = member.private.pop_front() {
                member.state = State::Busy;
                self.queued -= 1;
                return Some(Dispatch {
                    invocation: waiting.id,
                    sandbox,
                    affinity_hit: true,
                });
            }
            // What waited for it was withdrawn: it pulls like the others.
            let since = match member.state {
                State::Idle { since } => since,
                _ => Instant::now(),
            };
            self.settle_idle(sandbox, since);
        }
        None
    }

    /// How many more sandboxes to start now: invocations in the shared
    /// queue beyond the sandboxes already starting, within the concurrency
    /// limit.
    pub fn wanted_starts(&self) -> usize {
        let uncovered = self.pending.len().saturating_sub(self.starting);
        let room = self.concurrency.saturating_sub(self.members.len());
        uncovered.min(room)
    }

    /// Strict mode at its concurrency limit with keys waiting for a first
    /// sandbox: idle dedicated sandboxes to end (least recently used first)
    /// so new ones can start. They are marked leaving.
    pub fn evictions(&mut self) -> Vec<SandboxId> {
        if self.mode != AffinityMode::Strict || self.members.len() < self.concurrency {
            return Vec::new();
        }
        let uncovered = self
            .pending
            .len()
            .saturating_sub(self.starting + self.leaving);
        let mut idle: Vec<(Instant, SandboxId)> = self
            .members
            .iter()
            .filter_map(|(&id, m)| match m.state {
                State::Idle { since } if m.private.is_empty() && m.dedicated.is_some() => {
                    Some((since, id))
                }
                _ => None,
            })
            .collect();
        idle.sort_unstable();
        let chosen: Vec<SandboxId> = idle.into_iter().take(uncovered).map(|(_, id)| id).collect();
        for &id in &chosen {
            self.leave(id);
        }
        chosen
    }

    /// Idle sandboxes whose idle time reached `timeout` and that no
    /// pre-trigger keeps; they are marked leaving.
    pub fn reapable(&mut self, now: Instant, timeout: Duration) -> Vec<SandboxId> {
        let chosen: Vec<SandboxId> = self
            .members
            .iter()
            .filter(|(_, m)| match m.state {
                State::Idle { since } => {
                    m.private.is_empty()
                        && now.saturating_duration_since(since) >= timeout
                        && !m.pinned_at(now)
                }
                _ => false,
            })
            .map(|(&id, _)| id)
            .collect();
        for &id in &chosen {
            self.leave(id);
        }
        chosen
    }

    /// Every idle or starting sandbox, marked leaving (the version is
    /// retired); busy ones finish their invocation first.
    pub fn retire(&mut self) -> Vec<SandboxId> {
        let chosen: Vec<SandboxId> = self
            .members
            .iter()
            .filter(|(_, m)| matches!(m.state, State::Idle { .. } | State::Starting))
            .map(|(&id, _)| id)
            .collect();
        for &id in &chosen {
            self.leave(id);
        }
        chosen
    }

    fn leave(&mut self, id: SandboxId) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        if member.state == State::Starting {
            self.starting -= 1;
        }
        if member.state != State::Leaving {
            member.state = State::Leaving;
            self.leaving += 1;
        }
        self.idle.retain(|&s| s != id);
        self.hot.retain(|&s| s != id);
        self.keys.retain(|_, s| *s != id);
        let private: Vec<Waiting> = member.private.drain(..).collect();
        for waiting in private.into_iter().rev() {
            self.pending.push_front(waiting);
        }
    }

    /// A sandbox was set up for this function (pooled or new); a
    /// pre-trigger keeps it from idle reaping until `pinned_until`.
    pub fn sandbox_starting(&mut self, sandbox: SandboxId, pinned_until: Option<Instant>) {
        self.starting += 1;
        self.members.insert(sandbox, Member::starting(pinned_until));
    }

    /// Whether a pre-trigger keeps `sandbox` at `now`.
    pub fn pinned(&self, sandbox: SandboxId, now: Instant) -> bool {
        self.members
            .get(&sandbox)
            .is_some_and(|member| member.pinned_at(now))
    }

    /// A starting sandbox finished its init and is idle.
    pub fn sandbox_ready(&mut self, sandbox: SandboxId, now: Instant) {
        if self
            .members
            .get(&sandbox)
            .is_some_and(|m| m.state == State::Starting)
        {
            self.starting -= 1;
            self.settle_idle(sandbox, now);
        }
    }

    /// A busy sandbox finished its invocation and pulls again.
    pub fn sandbox_idle(&mut self, sandbox: SandboxId, now: Instant) {
        if self
            .members
            .get(&sandbox)
            .is_some_and(|m| m.state == State::Busy)
        {
            self.settle_idle(sandbox, now);
        }
    }

    fn settle_idle(&mut self, sandbox: SandboxId, since: Instant) {
        let member = self.members.get_mut(&sandbox).expect("caller checked");
        member.state = State::Idle { since };
        if !member.private.is_empty() {
            self.hot.push_back(sandbox);
        } else if member.dedicated.is_none() {
            self.idle.push(sandbox);
        }
    }

    /// A sandbox of this function is gone. What waited for it in particular
    /// goes back to the front of the shared queue, and its keys are free.
    pub fn sandbox_gone(&mut self, sandbox: SandboxId) {
        self.leave(sandbox);
        if self.members.remove(&sandbox).is_some() {
            self.leaving -= 1;
        }
    }

    /// Keep up to `count` sandboxes from idle reaping until `until`: the
    /// live ones first; returns how many more to start (within the
    /// concurrency limit).
    pub fn pin(&mut self, count: usize, until: Instant) -> usize {
        let mut pinned = 0;
        for member in self.members.values_mut() {
            if pinned == count {
                break;
            }
            if member.state != State::Leaving {
                member.pinned_until = member.pinned_until.max(Some(until));
                pinned += 1;
            }
        }
        let room = self.concurrency.saturating_sub(self.members.len());
        (count - pinned).min(room)
    }

    /// The oldest invocation in the shared queue.
    pub fn front(&self) -> Option<InvocationId> {
        self.pending.front().map(|w| w.id)
    }

    /// Whether the sandbox is the one `key` last went to.
    pub fn serves_key(&self, sandbox: SandboxId, key: &str) -> bool {
        self.keys.get(key) == Some(&sandbox)
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    pub fn queued(&self) -> usize {
        self.queued
    }

    pub fn peak(&self) -> usize {
        self.peak
    }

    pub fn live(&self) -> usize {
        self.members.len()
    }

    pub fn starting(&self) -> usize {
        self.starting
    }

    pub fn idle_count(&self) -> usize {
        self.count(|m| matches!(m.state, State::Idle { .. }))
    }

    pub fn busy_count(&self) -> usize {
        self.count(|m| m.state == State::Busy)
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Pinned sandboxes whose init finished, and those still starting.
    pub fn prepared(&self, now: Instant) -> (usize, usize) {
        let ready =
            self.count(|m| m.pinned_at(now) && matches!(m.state, State::Idle { .. } | State::Busy));
        let starting = self.count(|m| m.pinned_at(now) && m.state == State::Starting);
        (ready, starting)
    }

    fn count(&self, f: impl Fn(&Member) -> bool) -> usize {
        self.members.values().filter(|m| f(m)).count()
    }
}

fn remove_from(queue: &mut VecDeque<Waiting>, id: InvocationId) -> bool {
    match queue.iter().position(|w| w.id == id) {
        Some(at) => {
            queue.remove(at);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests;
