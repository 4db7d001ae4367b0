//! What a handler learns about its function and its invocation.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sprout::ring::{CallError, RingError, RuntimeRing};

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
    /// The call tree's id (32 hex digits).
    pub trace_id: Option<String>,
    /// The caller's invocation id (decimal) for a nested call, the span id
    /// of a client's `traceparent` (hex), or `None` for a root.
    pub parent_id: Option<String>,
    /// 0 for a client invocation, one more per nested call.
    pub depth: u32,
    /// The ring nested calls go over (`None` outside [`crate::serve`]).
    ring: Option<Rc<RefCell<RuntimeRing>>>,
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
            trace_id: None,
            parent_id: None,
            depth: 0,
            ring: None,
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
        if let Ok(meta) = serde_json::from_slice::<serde_json::Value>(meta) {
            let text = |key: &str| meta.get(key)?.as_str().map(str::to_owned);
            ctx.affinity_key = text("affinity_key");
            ctx.trace_id = text("trace_id");
            ctx.parent_id = text("parent_id");
            ctx.depth = meta
                .get("depth")
                .and_then(serde_json::Value::as_u64)
                .map_or(0, |d| u32::try_from(d).unwrap_or(u32::MAX));
        }
        ctx
    }

    pub(crate) fn with_ring(mut self, ring: Rc<RefCell<RuntimeRing>>) -> Context {
        self.ring = Some(ring);
        self
    }

    /// Invoke function `name` with `payload` through the daemon and wait
    /// for its result bytes (the callee runs in its own sandbox, in this
    /// invocation's trace one level deeper).
    pub fn invoke(&self, name: &str, payload: &[u8]) -> Result<Vec<u8>, CallError> {
        self.call(name, false, payload).map(|(_, result)| result)
    }

    /// Start function `name` with `payload` without waiting for it: the
    /// callee's invocation id once the daemon queued it.
    pub fn invoke_async(&self, name: &str, payload: &[u8]) -> Result<u64, CallError> {
        self.call(name, true, payload).map(|(id, _)| id)
    }

    /// [`Context::invoke`] with JSON in and out.
    pub fn invoke_json(
        &self,
        name: &str,
        event: &serde_json::Value,
    ) -> Result<serde_json::Value, CallError> {
        let payload = serde_json::to_vec(event).expect("a Value serialises");
        let result = self.invoke(name, &payload)?;
        if result.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&result).map_err(|e| CallError {
            kind: "FunctionError".into(),
            message: format!("{name} returned something that is not JSON: {e}"),
            error_type: Some("Runtime.UnmarshalError".into()),
        })
    }

    fn call(
        &self,
        name: &str,
        detached: bool,
        payload: &[u8],
    ) -> Result<(u64, Vec<u8>), CallError> {
        let ring = self.ring.as_ref().ok_or_else(|| CallError {
            kind: "BadRequest".into(),
            message: "nested calls need the sprout runtime's serve loop".into(),
            error_type: None,
        })?;
        let reply = ring
            .borrow_mut()
            .call(name, detached, payload)
            .map_err(|err| CallError {
                kind: match err {
                    RingError::TooLarge { .. } => "TooLarge",
                    _ => "Internal",
                }
                .into(),
                message: err.to_string(),
                error_type: None,
            })?;
        reply.outcome.map(|result| (reply.invocation_id, result))
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
        assert_eq!((none.trace_id, none.parent_id, none.depth), (None, None, 0));
    }

    #[test]
    fn trace_context_comes_from_the_meta() {
        let meta = br#"{"id":3,"deadline_ms":5,"trace_id":"0af7651916cd43dd8448eb211c80319c","parent_id":"2","depth":1}"#;
        let ctx = Context::for_invoke(&info(), 3, Some(5), meta);
        assert_eq!(
            ctx.trace_id.as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!((ctx.parent_id.as_deref(), ctx.depth), (Some("2"), 1));
        // Outside the serve loop there is no ring to call over.
        assert_eq!(ctx.invoke("f", b"").unwrap_err().kind, "BadRequest");
    }
}
