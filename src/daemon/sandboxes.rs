//! Sandboxes as the event loop sees them: provisioning, ring messages,
//! exits, pool refill.

use std::time::{Duration, Instant};

use super::calls::Call;
use super::tokens::Event;
use super::{log_limit, Daemon};
use crate::lambda::env::InitType;
use crate::pool::{FunctionKey, KillReason, Phase, Shape};
use crate::protocol::{ErrorBody, ErrorKind};
use crate::reactor::{Completion, Op};
use crate::ring::{self, RuntimeMessage};
use crate::scheduler::SandboxId;

/// Pause between pool refills after a sandbox failed to spawn.
const REFILL_BACKOFF: Duration = Duration::from_secs(1);
/// Ring messages handled per doorbell before the loop moves on: a runtime
/// that keeps its ring full cannot hold the event loop.
const MAX_MESSAGES_PER_BELL: usize = 64;

impl Daemon {
    /// Start one more sandbox for `key`: a pooled one when the pool has its
    /// shape, else a new one (`None` when none could be had). A pre-trigger
    /// keeps it from idle reaping until `pinned_until`.
    pub(super) fn provision(
        &mut self,
        key: &FunctionKey,
        pinned_until: Option<Instant>,
    ) -> Option<SandboxId> {
        let state = self.functions.get(key)?;
        let shape = Shape {
            runtime: state.function.runtime,
            memory_mb: state.function.memory_mb,
        };
        // The queue learns of the sandbox before its assignment, which
        // tells the runtime whether a pre-trigger started it.
        let starting = |daemon: &mut Daemon, sandbox| {
            if let Some(state) = daemon.functions.get_mut(key) {
                state.queue.sandbox_starting(sandbox, pinned_until);
            }
        };
        let sandbox = match self.pool.take_pooled(shape) {
            Some(sandbox) => {
                starting(self, sandbox);
                self.assign(sandbox, key);
                sandbox
            }
            None => match self.spawn(shape, Some(key.clone())) {
                Some(sandbox) => {
                    starting(self, sandbox);
                    sandbox
                }
                None => {
                    let front = self.functions.get(key).and_then(|s| s.queue.front());
                    if let Some(invocation) = front {
                        self.fail(
                            invocation,
                            ErrorKind::Internal,
                            "could not create a sandbox (see the daemon's log)".into(),
                        );
                    }
                    return None;
                }
            },
        };
        tracing::debug!(sandbox, function = %key.0, "provisioned");
        self.refill_wanted = true;
        Some(sandbox)
    }

    /// Create a sandbox and watch its doorbell and its exit.
    fn spawn(&mut self, shape: Shape, function: Option<FunctionKey>) -> Option<SandboxId> {
        match self.pool.spawn(shape, function) {
            Ok(id) => {
                let slot = self.pool.get(id).expect("just spawned");
                let bell = slot.ring.response_bell();
                let pidfd = slot.sandbox.pidfd();
                self.reactor.submit(
                    Event::Bell(id).token(),
                    Op::Read {
                        fd: bell,
                        buf: Vec::with_capacity(8),
                    },
                );
                self.reactor
                    .submit(Event::Exit(id).token(), Op::PollReadable { fd: pidfd });
                Some(id)
            }
            Err(err) => {
                tracing::error!(runtime = %shape.runtime, %err, "cannot create a sandbox");
                self.refill_after = Instant::now() + REFILL_BACKOFF;
                None
            }
        }
    }

    /// Hand a READY sandbox a function's code.
    fn assign(&mut self, sandbox: SandboxId, key: &FunctionKey) {
        let Some(state) = self.functions.get_mut(key) else {
            self.pool.kill(sandbox, KillReason::Retired);
            return;
        };
        let init_type = if state.queue.pinned(sandbox, Instant::now()) {
            InitType::Provisioned
        } else {
            InitType::OnDemand
        };
        let assignment = state.assignment(&self.config.region, sandbox, init_type);
        let Some(slot) = self.pool.get_mut(sandbox) else {
            return;
        };
        slot.function = Some(key.clone());
        slot.phase = Phase::Initializing;
        let assigned = state.code_tree().and_then(|tree| {
            let code = std::os::fd::AsFd::as_fd(&state.code);
            slot.sandbox.assign(state.package(tree), code, &assignment)
        });
        if let Err(err) = assigned {
            if let Some(suppressed) = log_limit::admit() {
                tracing::warn!(sandbox, suppressed, %err, "assignment failed");
            }
            self.pool.kill(sandbox, KillReason::RingViolation);
        }
        state.prepare_spare();
    }

    /// Top the pool up toward its targets with tenant-neutral sandboxes,
    /// when the event loop is idle (see `refill_wanted`): one sandbox for
    /// the shape the pool lacks most, then another turn if it still falls
    /// short. Creating a sandbox holds the loop for a few milliseconds, so
    /// a refill of several goes one per idle turn, never all at once.
    pub(super) fn refill_pool(&mut self) {
        if self.stopping || Instant::now() < self.refill_after {
            return;
        }
        let shortfall = self.pool.shortfall();
        let Some(&(shape, missing)) = shortfall.iter().max_by_key(|(_, missing)| *missing) else {
            return;
        };
        if self.spawn(shape, None).is_some() && (missing > 1 || shortfall.len() > 1) {
            self.refill_wanted = true;
        }
    }

    pub(super) fn on_bell(&mut self, id: SandboxId, completion: Completion) {
        let Some(slot) = self.pool.get_mut(id) else {
            return;
        };
        if slot.phase == Phase::Dying {
            return;
        }
        if let Err(err) = &completion.result {
            if let Some(suppressed) = log_limit::admit() {
                tracing::warn!(sandbox = id, suppressed, %err, "reading the sandbox doorbell failed");
            }
            self.pool.kill(id, KillReason::RingViolation);
            return;
        }
        let mut buf = completion.buf.unwrap_or_default();
        buf.clear();
        let bell = slot.ring.response_bell();
        self.reactor.submit(
            Event::Bell(id).token(),
            Op::Read {
                fd: bell.clone(),
                buf,
            },
        );
        for _ in 0..MAX_MESSAGES_PER_BELL {
            let Some(slot) = self.pool.get_mut(id) else {
                return;
            };
            if slot.phase == Phase::Dying {
                return;
            }
            match slot.ring.recv() {
                Ok(Some(message)) => self.on_ring_message(id, message),
                Ok(None) => return,
                Err(err) => return self.ring_violation(id, &err.to_string()),
            }
        }
        // More may be waiting: ring the bell ourselves, so the read just
        // submitted completes and the rest is drained on a later turn,
        // after other sandboxes and connections had theirs.
        if let Err(err) = nix::unistd::write(&*bell, &1u64.to_ne_bytes()) {
            tracing::debug!(sandbox = id, %err, "re-ring the doorbell");
        }
    }

    fn on_ring_message(&mut self, id: SandboxId, message: RuntimeMessage) {
        let slot = self.pool.get_mut(id).expect("caller checked");
        match (slot.phase, message) {
            (Phase::Booting, RuntimeMessage::Ready) => match slot.function.clone() {
                Some(key) => self.assign(id, &key),
                None => {
                    tracing::debug!(
                        sandbox = id,
                        boot_ms = slot.created.elapsed().as_millis() as u64,
                        "pooled"
                    );
                    self.pool.make_pooled(id);
                    self.serve_waiting(slot_shape(&self.pool, id));
                }
            },
            (Phase::Initializing, RuntimeMessage::InitOk) => {
                let key = slot
                    .function
                    .clone()
                    .expect("initializing sandboxes have a function");
                let now = Instant::now();
                slot.phase = Phase::Idle;
                slot.initialized = true;
                slot.ready_at = Some(now);
                if let Some(counters) = self.counters.get_mut(&key.0) {
                    counters.initialized(slot.assigned_at, now);
                }
                match self.functions.get_mut(&key) {
                    Some(state) if !state.retired => {
                        state.queue.sandbox_ready(id, now);
                        self.pump(&key);
                    }
                    _ => self.pool.kill(id, KillReason::Retired),
                }
            }
            (Phase::Initializing, RuntimeMessage::InitError { body }) => {
                let key = slot
                    .function
                    .clone()
                    .expect("initializing sandboxes have a function");
                let error = function_error(&body, "function init failed");
                self.pool.kill(id, KillReason::Retired);
                // Every sandbox of this version would fail the same way.
                let pending = self
                    .functions
                    .get_mut(&key)
                    .map(|s| s.queue.drain_pending())
                    .unwrap_or_default();
                for invocation in pending {
                    self.fail_with(invocation, error.clone());
                }
            }
            (Phase::Busy(current), RuntimeMessage::Result { id: inv, body }) if inv == current => {
                slot.served += 1;
                self.succeed(inv, body);
                self.sandbox_idle(id);
            }
            (Phase::Busy(current), RuntimeMessage::Error { id: inv, body }) if inv == current => {
                slot.served += 1;
                self.fail_with(inv, function_error(&body, "handler failed"));
                self.sandbox_idle(id);
            }
            (
                Phase::Busy(current),
                RuntimeMessage::Call {
                    id: call_id,
                    function,
                    detached,
                    payload,
                },
            ) => {
                let call = Call {
                    id: call_id,
                    function,
                    detached,
                    payload,
                };
                self.on_call(id, current, call);
            }
            (phase, message) => {
                let reason = format!("unexpected {} while {phase:?}", message_name(&message));
                self.ring_violation(id, &reason);
            }
        }
    }

    /// A neutral sandbox became pooled: give it to a function whose queue
    /// is waiting for a sandbox of that shape.
    fn serve_waiting(&mut self, shape: Option<Shape>) {
        let Some(shape) = shape else {
            return;
        };
        let waiting: Vec<FunctionKey> = self
            .functions
            .iter()
            .filter(|(_, s)| {
                !s.retired
                    && s.function.runtime == shape.runtime
                    && s.function.memory_mb == shape.memory_mb
                    && s.queue.wanted_starts() > 0
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in waiting {
            self.pump(&key);
        }
    }

    pub(super) fn ring_violation(&mut self, id: SandboxId, reason: &str) {
        if let Some(suppressed) = log_limit::admit() {
            tracing::warn!(
                sandbox = id,
                reason,
                suppressed,
                "runtime broke the ring protocol, killing it"
            );
        }
        let busy = match self.pool.get(id).map(|s| s.phase) {
            Some(Phase::Busy(invocation)) => Some(invocation),
            _ => None,
        };
        self.pool.kill(id, KillReason::RingViolation);
        if let Some(invocation) = busy {
            self.fail(
                invocation,
                ErrorKind::RuntimeCrash,
                format!("runtime broke the ring protocol: {reason}"),
            );
        }
    }

    /// A sandbox's process is gone: answer what it was running, account
    /// for it in its function's queue, and tear it down.
    pub(super) fn on_exit(&mut self, id: SandboxId) {
        let Some(slot) = self.pool.remove(id) else {
            return;
        };
        self.reactor.cancel(Event::Bell(id).token());
        self.prewarmed.remove(&id);
        let memory = slot.sandbox.memory_report();
        let limit_mb = slot.shape.memory_mb;
        let was_starting = slot.is_starting();
        let busy = match slot.phase {
            Phase::Busy(invocation) => Some(invocation),
            _ => None,
        };
        let cause = if slot.sandbox.killed_by_policy() {
            if let Some(suppressed) = log_limit::admit() {
                tracing::warn!(
                    sandbox = id,
                    suppressed,
                    "seccomp policy killed the runtime"
                );
            }
            (
                ErrorKind::PolicyViolation,
                "the runtime made a system call its seccomp policy forbids and was killed (SIGSYS)"
                    .to_string(),
            )
        } else if memory.oom_kills > 0 {
            (
                ErrorKind::OutOfMemory,
                format!(
                    "sandbox ran out of memory (peak {} MiB of its {limit_mb} MiB limit)",
                    memory.peak_bytes / (1024 * 1024)
                ),
            )
        } else {
            (
                ErrorKind::RuntimeCrash,
                "runtime exited while running the invocation".to_string(),
            )
        };
        // An invocation still bound to this sandbox gets the cause; one the
        // daemon already answered (timeout, ring violation) is gone.
        let bound = busy.or_else(|| {
            self.invocations
                .iter()
                .find(|(_, i)| i.sandbox == Some(id))
                .map(|(&inv, _)| inv)
        });
        if let Some(invocation) = bound {
            self.fail(invocation, cause.0, cause.1.clone());
        }
        if let Some(key) = slot.function.clone() {
            if let Some(state) = self.functions.get_mut(&key) {
                state.queue.sandbox_gone(id);
                let deliberate = matches!(
                    slot.killed,
                    Some(KillReason::Retired | KillReason::Shutdown | KillReason::Reaped)
                );
                if was_starting && !deliberate {
                    // It died in its init: the oldest waiting invocation
                    // learns why instead of waiting for a retry loop.
                    if let Some(front) = state.queue.front() {
                        let (kind, message) = if cause.0 != ErrorKind::RuntimeCrash {
                            cause.clone()
                        } else {
                            (
                                ErrorKind::RuntimeCrash,
                                "runtime exited before finishing its init".into(),
                            )
                        };
                        self.fail(front, kind, message);
                    }
                }
            }
            self.pump(&key);
            self.forget_if_drained(&key);
        }
        tracing::debug!(sandbox = id, killed = ?slot.killed, "sandbox exited");
        if let Err(err) = slot.sandbox.destroy() {
            if let Some(suppressed) = log_limit::admit() {
                tracing::warn!(sandbox = id, suppressed, %err, "sandbox teardown incomplete");
            }
        }
        self.refill_wanted = true;
    }
}

fn slot_shape(pool: &crate::pool::Pool, id: SandboxId) -> Option<Shape> {
    pool.get(id).map(|s| s.shape)
}

/// Turn a runtime's ERROR or INIT_ERROR body into the client's error.
fn function_error(body: &[u8], fallback: &str) -> ErrorBody {
    let (error_type, message, stack_trace) = ring::parse_function_error(body);
    let message = if message.is_empty() {
        fallback.to_string()
    } else {
        message
    };
    ErrorBody {
        kind: ErrorKind::FunctionError,
        message,
        error_type: Some(error_type),
        stack_trace,
    }
}

fn message_name(message: &RuntimeMessage) -> &'static str {
    match message {
        RuntimeMessage::Ready => "READY",
        RuntimeMessage::InitOk => "INIT_OK",
        RuntimeMessage::InitError { .. } => "INIT_ERROR",
        RuntimeMessage::Result { .. } => "RESULT",
        RuntimeMessage::Error { .. } => "ERROR",
        RuntimeMessage::Call { .. } => "CALL",
    }
}
