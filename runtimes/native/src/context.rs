//! What a handler learns about its function and its invocation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Function-wide facts, read once from the environment the sandbox init
/// gave the bootstrap (`SPROUT_FUNCTION`, `SPROUT_FUNCTION_VERSION`,
/// `SPROUT_MEMORY_MB`, `SPROUT_TIMEOUT_MS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    pub name: String,
    pub version: u64,
    pub memory_mb: u64,
    pub timeout_ms: u64,
}

impl FunctionInfo {
    pub fn from_env() -> FunctionInfo {
        let number = |key: &str| {
            std::env::var(key)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        FunctionInfo {
            name: std::env::var("SPROUT_FUNCTION").unwrap_or_default(),
            version: number("SPROUT_FUNCTION_VERSION"),
            memory_mb: number("SPROUT_MEMORY_MB"),
            timeout_ms: number("SPROUT_TIMEOUT_MS"),
        }
    }
}

/// The second argument of every handler call.
#[derive(Debug, Clone)]
pub struct Context {
    pub function_name: String,
    pub function_version: u64,
    pub memory_mb: u64,
    /// The invocation id the daemon assigned.
    pub invocation_id: u64,
    /// When the daemon will kill the sandbox if the handler is still running.
    pub deadline: SystemTime,
    /// The invocation's affinity key, if it was sent with one.
    pub affinity_key: Option<String>,
}

impl Context {
    pub(crate) fn new(
        function: &FunctionInfo,
        invocation_id: u64,
        deadline_ms: Option<u64>,
    ) -> Context {
        let deadline = match deadline_ms {
            Some(ms) => UNIX_EPOCH + Duration::from_millis(ms),
            None => SystemTime::now() + Duration::from_millis(function.timeout_ms),
        };
        Context {
            function_name: function.name.clone(),
            function_version: function.version,
            memory_mb: function.memory_mb,
            invocation_id,
            deadline,
            affinity_key: None,
        }
    }

    /// The context of an invocation whose INVOKE meta is `meta` (keys this
    /// version does not know are ignored).
    pub(crate) fn for_invoke(
        function: &FunctionInfo,
        invocation_id: u64,
        deadline_ms: Option<u64>,
        meta: &[u8],
    ) -> Context {
        let mut ctx = Context::new(function, invocation_id, deadline_ms);
        if !meta.is_empty() {
            ctx.affinity_key = serde_json::from_slice::<serde_json::Value>(meta)
                .ok()
                .and_then(|m| m.get("affinity_key")?.as_str().map(str::to_owned));
        }
        ctx
    }

    /// The invocation id as a string (Lambda's `aws_request_id`).
    pub fn request_id(&self) -> String {
        self.invocation_id.to_string()
    }

    /// Time left before the deadline (zero once it has passed).
    pub fn remaining_time(&self) -> Duration {
        self.deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> FunctionInfo {
        FunctionInfo {
            name: "f".into(),
            version: 2,
            memory_mb: 128,
            timeout_ms: 1000,
        }
    }

    #[test]
    fn remaining_time_counts_down_to_zero() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let ctx = Context::new(&info(), 7, Some(now_ms + 5000));
        let left = ctx.remaining_time();
        assert!(
            left > Duration::from_secs(4) && left <= Duration::from_secs(5),
            "{left:?}"
        );
        assert_eq!(ctx.request_id(), "7");
        let past = Context::new(&info(), 8, Some(now_ms - 10));
        assert_eq!(past.remaining_time(), Duration::ZERO);
        let fallback = Context::new(&info(), 9, None);
        assert!(fallback.remaining_time() <= Duration::from_secs(1));
        assert_eq!(fallback.affinity_key, None);
    }

    #[test]
    fn affinity_key_comes_from_the_meta() {
        let meta = br#"{"id":1,"deadline_ms":5,"affinity_key":"tenant \"7\"","later":[1]}"#;
        let ctx = Context::for_invoke(&info(), 1, Some(5), meta);
        assert_eq!(ctx.affinity_key.as_deref(), Some("tenant \"7\""));
        let none = Context::for_invoke(&info(), 2, Some(5), br#"{"id":2,"deadline_ms":5}"#);
        assert_eq!(none.affinity_key, None);
    }
}
