//! Nested calls: a handler invokes another function through its ring.
//!
//! A CALL comes in on the ring of a busy sandbox; the daemon makes it an
//! ordinary invocation (queue, provisioning, sandboxes) in the caller's
//! trace one level deeper, and answers with a CALL_RESULT in the caller's
//! request ring: at once for a fire-and-forget call, when the callee
//! finishes for a synchronous one. Meanwhile the caller's sandbox stays
//! busy, its runtime blocked on its request bell.

use std::time::Instant;

use super::invoke::{Carried, Origin};
use super::Daemon;
use crate::pool::{KillReason, Phase};
use crate::protocol::{ErrorBody, ErrorKind};
use crate::scheduler::{InvocationId, SandboxId};

/// Longest error message handed back in a CALL_RESULT (the meta must fit
/// the ring beside nothing else, but a callee's message has no bound of
/// its own).
const MAX_CALL_ERROR_MESSAGE: usize = 2048;

/// One CALL as read from a ring.
pub(super) struct Call {
    pub id: u64,
    pub function: String,
    pub detached: bool,
    pub payload: Vec<u8>,
}

impl Daemon {
    /// Sandbox `sandbox`, running `caller`, sent `call`.
    pub(super) fn on_call(&mut self, sandbox: SandboxId, caller: InvocationId, call: Call) {
        let Some(invocation) = self.invocations.get_mut(&caller) else {
            return; // answered already (the sandbox is on its way out)
        };
        if let Some(pending) = invocation.calling {
            let reason = format!("CALL {} while call {pending} is outstanding", call.id);
            return self.ring_violation(sandbox, &reason);
        }
        invocation.calling = Some(call.id);
        let child = invocation.trace.child(caller, self.config.max_call_depth);
        let wait_until = Some(call_wait_limit(invocation.expires));
        let trace = match child {
            Ok(trace) => trace,
            Err(message) => {
                let error = ErrorBody::new(ErrorKind::BadRequest, message);
                return self.answer_call(sandbox, caller, call.id, 0, Err(error));
            }
        };
        let origin = if call.detached {
            Origin::Detached
        } else {
            Origin::Call {
                sandbox,
                caller,
                call_id: call.id,
            }
        };
        let admitted = self.admit(
            origin,
            &call.function,
            call.payload,
            Carried::default(),
            trace,
            (!call.detached).then_some(wait_until).flatten(),
        );
        match admitted {
            Ok(callee) if call.detached => {
                self.answer_call(sandbox, caller, call.id, callee, Ok(Vec::new()))
            }
            Ok(_) => {}
            Err(error) => self.answer_call(sandbox, caller, call.id, 0, Err(error)),
        }
    }

    /// Push the CALL_RESULT of `call_id` into the caller's ring, if the
    /// caller still runs in `sandbox` and waits for that call.
    pub(super) fn answer_call(
        &mut self,
        sandbox: SandboxId,
        caller: InvocationId,
        call_id: u64,
        callee: InvocationId,
        outcome: Result<Vec<u8>, ErrorBody>,
    ) {
        let Some(invocation) = self.invocations.get_mut(&caller) else {
            return;
        };
        if invocation.calling != Some(call_id) || invocation.sandbox != Some(sandbox) {
            return;
        }
        invocation.calling = None;
        let Some(slot) = self.pool.get_mut(sandbox) else {
            return;
        };
        if slot.phase != Phase::Busy(caller) {
            return;
        }
        let (meta, result) = match outcome {
            Ok(result) => (format!(r#"{{"ok":true,"invocation_id":{callee}}}"#), result),
            Err(mut error) => {
                if error.message.len() > MAX_CALL_ERROR_MESSAGE {
                    let mut cut = MAX_CALL_ERROR_MESSAGE;
                    while !error.message.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    error.message.truncate(cut);
                }
                let meta = serde_json::json!({
                    "ok": false,
                    "invocation_id": callee,
                    "error": {
                        "kind": error.kind.as_str(),
                        "message": error.message,
                        "error_type": error.error_type,
                    },
                });
                (meta.to_string(), Vec::new())
            }
        };
        if let Err(err) = slot
            .ring
            .send_call_result(call_id, meta.as_bytes(), &result)
        {
            if let Some(suppressed) = super::log_limit::admit() {
                tracing::warn!(sandbox, suppressed, %err, "ring refused a call result");
            }
            self.pool.kill(sandbox, KillReason::RingViolation);
            self.fail(
                caller,
                ErrorKind::RuntimeCrash,
                format!("sandbox ring failed: {err}"),
            );
        }
    }
}

/// How long a synchronous call may wait for a sandbox when its caller is
/// killed at `caller_deadline`: nine tenths of the time left, so the
/// caller's handler still has time to act on the Throttled error.
fn call_wait_limit(caller_deadline: Instant) -> Instant {
    let now = Instant::now();
    let left = caller_deadline.saturating_duration_since(now);
    now + left - left / 10
}
