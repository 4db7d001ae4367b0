//! Housekeeping on the tick: sandboxes idle past their function's idle
//! timeout, and pooled sandboxes beyond the pool's target.

use std::time::{Duration, Instant};

use super::Daemon;
use crate::pool::KillReason;
use crate::scheduler::SandboxId;

impl Daemon {
    pub(super) fn reap(&mut self, now: Instant) {
        let mut idle: Vec<(String, SandboxId)> = Vec::new();
        for ((name, _), state) in self.functions.iter_mut() {
            let timeout = Duration::from_secs(state.function.idle_timeout_secs.into());
            idle.extend(
                state
                    .queue
                    .reapable(now, timeout)
                    .into_iter()
                    .map(|id| (name.clone(), id)),
            );
        }
        for (name, sandbox) in idle {
            tracing::debug!(sandbox, function = %name, "idle timeout, destroying the sandbox");
            if let Some(counters) = self.counters.get_mut(&name) {
                counters.reaped += 1;
            }
            self.pool.kill(sandbox, KillReason::Reaped);
        }
        for sandbox in self.pool.surplus() {
            tracing::debug!(
                sandbox,
                "pool above its target, destroying a pooled sandbox"
            );
            self.pool.kill(sandbox, KillReason::Reaped);
        }
    }
}
