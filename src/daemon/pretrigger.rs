//! Pre-triggers: sandboxes prepared for a function before its invocations
//! come, kept from idle reaping for a while.

use std::time::{Duration, Instant};

use super::Daemon;
use crate::protocol::{
    ErrorBody, ErrorKind, PretriggerAccepted, PretriggerRequest, DEFAULT_PRETRIGGER_TTL_SECS,
};

/// Longest pre-trigger, in seconds.
pub(super) const MAX_TTL_SECS: u32 = 86_400;

impl Daemon {
    /// Pin up to `count` sandboxes of the function (its concurrency at
    /// most) until the TTL passes, starting the ones missing. Returns at
    /// once: the sandboxes finish loading in the background.
    pub(super) fn pretrigger(
        &mut self,
        req: &PretriggerRequest,
    ) -> Result<PretriggerAccepted, ErrorBody> {
        let ttl_secs = req.ttl_secs.unwrap_or(DEFAULT_PRETRIGGER_TTL_SECS);
        if req.count == 0 || !(1..=MAX_TTL_SECS).contains(&ttl_secs) {
            return Err(ErrorBody::new(
                ErrorKind::BadRequest,
                format!(
                    "a pre-trigger needs a count of at least 1 and a ttl of 1 to {MAX_TTL_SECS} s"
                ),
            ));
        }
        let Some(key) = self.current_key(&req.name) else {
            return Err(ErrorBody::new(
                ErrorKind::NotFound,
                format!("no function named {}", req.name),
            ));
        };
        let until = Instant::now() + Duration::from_secs(ttl_secs.into());
        let state = self.functions.get_mut(&key).expect("current key is served");
        let count = (req.count as usize).min(state.queue.concurrency());
        let missing = state.queue.pin(count, until);
        let mut starting = 0;
        for _ in 0..missing {
            if self.provision(&key, Some(until)).is_none() {
                break;
            }
            starting += 1;
        }
        tracing::info!(function = %key.0, count, starting, ttl_secs, "pre-triggered");
        Ok(PretriggerAccepted {
            name: key.0,
            version: key.1,
            count: count as u32,
            starting,
            ttl_secs,
        })
    }
}
