//! One sandbox as its function's queue sees it.

use std::collections::VecDeque;
use std::time::Instant;

use super::InvocationId;

/// An invocation waiting for a sandbox, with its affinity key.
#[derive(Debug)]
pub(super) struct Waiting {
    pub id: InvocationId,
    pub key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Assigned to the function, its init not finished.
    Starting,
    Idle {
        since: Instant,
    },
    Busy,
    /// Being destroyed (idle timeout, eviction, retirement).
    Leaving,
}

#[derive(Debug)]
pub(super) struct Member {
    pub state: State,
    /// Invocations whose key belongs to this sandbox, waiting for it.
    pub private: VecDeque<Waiting>,
    /// Strict mode: the one key this sandbox serves.
    pub dedicated: Option<String>,
    /// A pre-trigger keeps it from idle reaping until then.
    pub pinned_until: Option<Instant>,
}

impl Member {
    pub fn starting(pinned_until: Option<Instant>) -> Member {
        Member {
            state: State::Starting,
            private: VecDeque::new(),
            dedicated: None,
            pinned_until,
        }
    }

    pub fn pinned_at(&self, now: Instant) -> bool {
        self.pinned_until.is_some_and(|until| until > now)
    }
}
