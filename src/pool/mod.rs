//! Sandboxes before and after assignment: the pre-forked, tenant-neutral
//! pool per shape, and the bookkeeping of every live sandbox.
//!
//! The pool only tracks; the daemon's event loop drives each sandbox
//! through its phases as messages arrive on its ring:
//!
//! ```text
//! Booting --READY--> Pooled --assign--> Initializing --INIT_OK--> Idle <--> Busy
//!    \--READY (spawned for a function)--/                     any --> Dying
//! ```

#![deny(unsafe_code)]

mod sizing;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

pub use sizing::{Demand, Sizing};

use crate::protocol::PoolStats;
use crate::ring::{HostRing, RingError};
use crate::sandbox::{Limits, RuntimeKind, Sandbox, SandboxEnv, SandboxError};
use crate::scheduler::{InvocationId, SandboxId};

/// Creating a sandbox failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("create ring: {0}")]
    Ring(#[from] RingError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// A function version: sandboxes serve exactly one.
pub type FunctionKey = (String, u64);

/// Sandboxes of one shape are interchangeable until assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shape {
    pub runtime: RuntimeKind,
    pub memory_mb: u32,
}

/// Where a sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Spawned; its runtime has not reported READY yet.
    Booting,
    /// READY and tenant-neutral, waiting in the pool.
    Pooled,
    /// Given a function's code; waiting for INIT_OK.
    Initializing,
    /// Serving its function, waiting for the next invocation.
    Idle,
    /// Running one invocation.
    Busy(InvocationId),
    /// Killed; waiting for its exit to be reaped.
    Dying,
}

/// Why a sandbox is being killed: decides the error its invocation gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    Timeout,
    RingViolation,
    Retired,
    BootTimeout,
    Shutdown,
    /// Idle past its function's idle timeout, evicted for another key, or
    /// a pooled sandbox beyond the pool's target.
    Reaped,
}

/// One live sandbox and its ring.
pub struct Slot {
    pub sandbox: Sandbox,
    pub ring: HostRing,
    pub shape: Shape,
    pub phase: Phase,
    /// The function this sandbox was assigned to or spawned for.
    pub function: Option<FunctionKey>,
    /// Invocations it has completed.
    pub served: u64,
    pub created: Instant,
    /// Set when the daemon killed it, and why.
    pub killed: Option<KillReason>,
    /// Its function's init finished (INIT_OK).
    pub initialized: bool,
    /// It was handed to its function from the pool (not created for it).
    pub from_pool: bool,
    /// When its function was given to it (assignment, or spawn for it).
    pub assigned_at: Instant,
    /// When its function's init finished.
    pub ready_at: Option<Instant>,
}

impl Slot {
    /// Counted by its function's queue as starting (not yet initialized).
    pub fn is_starting(&self) -> bool {
        self.function.is_some() && !self.initialized
    }

    /// Whether an invocation accepted at `accepted` that runs here is a
    /// cold start: this sandbox's first, and it had to wait for the init.
    /// A sandbox prepared ahead (pre-trigger, earlier demand) is warm.
    pub fn is_cold_for(&self, accepted: Instant) -> bool {
        self.served == 0 && self.ready_at.is_none_or(|ready| ready > accepted)
    }
}

/// Every sandbox of the daemon, and the pool targets per shape.
pub struct Pool {
    env: SandboxEnv,
    slots: HashMap<SandboxId, Slot>,
    pooled: BTreeMap<Shape, Vec<SandboxId>>,
    demand: BTreeMap<Shape, Demand>,
    sizing: Sizing,
    next_id: SandboxId,
    max_message: usize,
    created: u64,
    destroyed: u64,
}

impl Pool {
    pub fn new(env: SandboxEnv, max_message: usize, sizing: Sizing) -> Pool {
        Pool {
            env,
            slots: HashMap::new(),
            pooled: BTreeMap::new(),
            demand: BTreeMap::new(),
            sizing,
            next_id: 1,
            max_message,
            created: 0,
            destroyed: 0,
        }
    }

    pub fn env(&self) -> &SandboxEnv {
        &self.env
    }

    /// Keep sandboxes of `shape` in the pool (from `min` of them).
    pub fn add_shape(&mut self, shape: Shape) {
        let sizing = self.sizing;
        self.demand
            .entry(shape)
            .or_insert_with(|| Demand::new(sizing));
    }

    /// Move every shape's target after `elapsed` more of cold-start history.
    pub fn tick(&mut self, elapsed: Duration) {
        for demand in self.demand.values_mut() {
            demand.tick(elapsed, self.sizing);
        }
    }

    fn booting_neutral(&self, shape: Shape) -> usize {
        self.slots
            .values()
            .filter(|s| s.shape == shape && s.function.is_none() && s.phase == Phase::Booting)
            .count()
    }

    /// Some shape has nothing pooled or booting while its target wants
    /// sandboxes: its next cold start would create one from scratch.
    pub fn runs_dry(&self) -> bool {
        self.demand.iter().any(|(&shape, demand)| {
            demand.target > 0
                && self.pooled.get(&shape).is_none_or(Vec::is_empty)
                && self.booting_neutral(shape) == 0
        })
    }

    /// Shapes whose pooled plus booting neutral sandboxes fall short of
    /// their target, with how many are missing.
    pub fn shortfall(&self) -> Vec<(Shape, usize)> {
        self.demand
            .iter()
            .filter_map(|(&shape, demand)| {
                let have =
                    self.pooled.get(&shape).map_or(0, Vec::len) + self.booting_neutral(shape);
                (have < demand.target).then(|| (shape, demand.target - have))
            })
            .collect()
    }

    /// Pooled sandboxes beyond their shape's target (the newest), to end.
    pub fn surplus(&self) -> Vec<SandboxId> {
        self.demand
            .iter()
            .flat_map(|(shape, demand)| {
                let pooled = self.pooled.get(shape).map_or(&[][..], Vec::as_slice);
                pooled[pooled.len().min(demand.target)..].to_vec()
            })
            .collect()
    }

    /// The pool per shape, for `sprout stats`.
    pub fn stats(&self) -> Vec<PoolStats> {
        self.demand
            .iter()
            .map(|(&shape, demand)| PoolStats {
                runtime: shape.runtime.to_string(),
                memory_mb: shape.memory_mb,
                idle: self.pooled.get(&shape).map_or(0, Vec::len) as u64,
                booting: self.booting_neutral(shape) as u64,
                target: demand.target as u64,
                min: self.sizing.min as u64,
                max: self.sizing.max as u64,
                cold_start_rate: demand.rate,
                taken: demand.taken,
                misses: demand.misses,
            })
            .collect()
    }

    /// Sandboxes created and destroyed since the daemon started.
    pub fn lifetime_counts(&self) -> (u64, u64) {
        (self.created, self.destroyed)
    }

    /// Create a sandbox of `shape`, neutral or already meant for `function`.
    pub fn spawn(
        &mut self,
        shape: Shape,
        function: Option<FunctionKey>,
    ) -> Result<SandboxId, SpawnError> {
        let id = self.next_id;
        self.next_id += 1;
        let (ring, runtime_end) = HostRing::create(self.max_message)?;
        let limits = Limits::for_memory_mb(shape.memory_mb);
        let sandbox = self.env.spawn(id, shape.runtime, &limits, runtime_end)?;
        self.slots.insert(
            id,
            Slot {
                sandbox,
                ring,
                shape,
                phase: Phase::Booting,
                function,
                served: 0,
                created: Instant::now(),
                killed: None,
                initialized: false,
                from_pool: false,
                assigned_at: Instant::now(),
                ready_at: None,
            },
        );
        self.created += 1;
        Ok(id)
    }

    /// A neutral sandbox reported READY: it joins the pool.
    pub fn make_pooled(&mut self, id: SandboxId) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.phase = Phase::Pooled;
            self.pooled.entry(slot.shape).or_default().push(id);
        }
    }

    /// Take a pooled sandbox of `shape` out of the pool for a function's
    /// cold start, oldest first. Either way the shape's demand counts it.
    pub fn take_pooled(&mut self, shape: Shape) -> Option<SandboxId> {
        let taken = self
            .pooled
            .get_mut(&shape)
            .and_then(|ids| (!ids.is_empty()).then(|| ids.remove(0)));
        let sizing = self.sizing;
        if let Some(demand) = self.demand.get_mut(&shape) {
            demand.cold_start(taken.is_some(), sizing);
        }
        let slot = self.slots.get_mut(&taken?)?;
        slot.from_pool = true;
        slot.assigned_at = Instant::now();
        taken
    }

    pub fn get(&self, id: SandboxId) -> Option<&Slot> {
        self.slots.get(&id)
    }

    pub fn get_mut(&mut self, id: SandboxId) -> Option<&mut Slot> {
        self.slots.get_mut(&id)
    }

    /// Forget a sandbox (after its exit was seen) and hand it back for
    /// destruction.
    pub fn remove(&mut self, id: SandboxId) -> Option<Slot> {
        let slot = self.slots.remove(&id)?;
        if let Some(ids) = self.pooled.get_mut(&slot.shape) {
            ids.retain(|&i| i != id);
        }
        self.destroyed += 1;
        Some(slot)
    }

    /// Kill a sandbox; its exit arrives later through its pidfd.
    pub fn kill(&mut self, id: SandboxId, reason: KillReason) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.killed.get_or_insert(reason);
            slot.phase = Phase::Dying;
            slot.sandbox.kill();
            if let Some(ids) = self.pooled.get_mut(&slot.shape) {
                ids.retain(|&i| i != id);
            }
        }
    }

    pub fn ids(&self) -> Vec<SandboxId> {
        self.slots.keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether a cold start is under way: a sandbox is still loading the
    /// function it was given, or running its first invocation.
    pub fn any_cold(&self) -> bool {
        self.slots
            .values()
            .any(|s| s.is_starting() || (matches!(s.phase, Phase::Busy(_)) && s.served == 0))
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Sandboxes that have booted for longer than `limit` without READY,
    /// or been loading their function that long without INIT_OK (counted
    /// from the assignment: a sandbox may wait in the pool for hours).
    pub fn stuck_booting(&self, limit: Duration) -> Vec<SandboxId> {
        self.slots
            .iter()
            .filter(|(_, s)| match s.phase {
                Phase::Booting => s.created.elapsed() > limit,
                Phase::Initializing => s.assigned_at.elapsed() > limit,
                _ => false,
            })
            .map(|(&id, _)| id)
            .collect()
    }
}
