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

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

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
}

impl Slot {
    /// Counted by its function's queue as starting (not yet initialized).
    pub fn is_starting(&self) -> bool {
        self.function.is_some() && !self.initialized
    }
}

/// Every sandbox of the daemon, and the pool targets per shape.
pub struct Pool {
    env: SandboxEnv,
    slots: HashMap<SandboxId, Slot>,
    pooled: BTreeMap<Shape, Vec<SandboxId>>,
    targets: BTreeMap<Shape, usize>,
    next_id: SandboxId,
    max_message: usize,
}

impl Pool {
    pub fn new(env: SandboxEnv, max_message: usize) -> Pool {
        Pool {
            env,
            slots: HashMap::new(),
            pooled: BTreeMap::new(),
            targets: BTreeMap::new(),
            next_id: 1,
            max_message,
        }
    }

    pub fn env(&self) -> &SandboxEnv {
        &self.env
    }

    /// Keep `count` idle sandboxes of `shape` ready.
    pub fn set_target(&mut self, shape: Shape, count: usize) {
        self.targets.insert(shape, count);
    }

    /// Shapes whose pooled plus booting neutral sandboxes fall short of
    /// their target, with how many are missing.
    pub fn shortfall(&self) -> Vec<(Shape, usize)> {
        self.targets
            .iter()
            .filter_map(|(&shape, &target)| {
                let have = self.pooled.get(&shape).map_or(0, Vec::len)
                    + self
                        .slots
                        .values()
                        .filter(|s| {
                            s.shape == shape && s.function.is_none() && s.phase == Phase::Booting
                        })
                        .count();
                (have < target).then(|| (shape, target - have))
            })
            .collect()
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
            },
        );
        Ok(id)
    }

    /// A neutral sandbox reported READY: it joins the pool.
    pub fn make_pooled(&mut self, id: SandboxId) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.phase = Phase::Pooled;
            self.pooled.entry(slot.shape).or_default().push(id);
        }
    }

    /// Take a pooled sandbox of `shape` out of the pool, oldest first.
    pub fn take_pooled(&mut self, shape: Shape) -> Option<SandboxId> {
        let ids = self.pooled.get_mut(&shape)?;
        (!ids.is_empty()).then(|| ids.remove(0))
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

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Sandboxes that have booted for longer than `limit` without READY.
    pub fn stuck_booting(&self, limit: std::time::Duration) -> Vec<SandboxId> {
        self.slots
            .iter()
            .filter(|(_, s)| {
                matches!(s.phase, Phase::Booting | Phase::Initializing)
                    && s.created.elapsed() > limit
            })
            .map(|(&id, _)| id)
            .collect()
    }
}
