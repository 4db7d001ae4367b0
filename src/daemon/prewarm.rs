//! Pre-warming from learned call graphs: when a function deployed with
//! `--prewarm-callees` is about to start cold, the daemon starts sandboxes
//! for the functions it called in most of its recent invocations (and for
//! theirs, a few levels down), so their cold starts overlap its own
//! instead of following it on the critical path.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::Daemon;

/// How long a pre-warmed sandbox is kept from idle reaping.
const PREWARM_TTL: Duration = Duration::from_secs(30);
/// Levels of callees below the cold function that are pre-warmed.
const MAX_PREWARM_DEPTH: usize = 4;

impl Daemon {
    /// `name` is about to start cold: pre-warm its usual callees.
    pub(super) fn prewarm_callees(&mut self, name: &str) {
        let until = Instant::now() + PREWARM_TTL;
        let mut seen: HashSet<String> = HashSet::from([name.to_owned()]);
        let mut level = vec![name.to_owned()];
        for _ in 0..MAX_PREWARM_DEPTH {
            let mut next = Vec::new();
            for caller in &level {
                for callee in crate::trace::frequent_callees(&self.spans, caller) {
                    if seen.insert(callee.clone()) {
                        next.push(callee);
                    }
                }
            }
            if next.is_empty() {
                return;
            }
            for callee in &next {
                self.prewarm(callee, until);
            }
            level = next;
        }
    }

    /// Keep one sandbox of `name` until `until`, starting it if there is
    /// none.
    fn prewarm(&mut self, name: &str, until: Instant) {
        let Some(key) = self.current_key(name) else {
            return;
        };
        let state = self.functions.get_mut(&key).expect("current key is served");
        for _ in 0..state.queue.pin(1, until) {
            let Some(sandbox) = self.provision(&key, Some(until)) else {
                return;
            };
            tracing::debug!(sandbox, function = %key.0, "pre-warming a callee");
            self.prewarmed.insert(sandbox);
        }
    }
}
