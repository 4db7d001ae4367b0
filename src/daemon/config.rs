use std::path::PathBuf;
use std::time::Duration;

use crate::reactor::Backend;

/// Everything `sprout serve` can be told.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The Unix socket clients connect to.
    pub socket: PathBuf,
    /// Registry, function code and runtime files live here.
    pub state_dir: PathBuf,
    /// Force an event-loop backend; `None` probes io_uring and falls back
    /// to epoll.
    pub event_loop: Option<Backend>,
    /// Largest invocation payload (and result) accepted, in bytes.
    pub max_payload: usize,
    /// Fewest idle pre-forked sandboxes kept per shape; the pool starts
    /// here.
    pub pool_min: usize,
    /// Most idle pre-forked sandboxes kept per shape, however fast cold
    /// starts come.
    pub pool_max: usize,
    /// Deepest chain of nested calls: a client invocation is depth 0, a
    /// call from it depth 1, and a call past this depth fails.
    pub max_call_depth: u32,
    /// Spans of finished invocations kept for `sprout trace` and `sprout
    /// profile` (oldest dropped first).
    pub trace_capacity: usize,
    /// Export every span to this OTLP/HTTP collector
    /// (`http://host:port/v1/traces`).
    pub otlp_endpoint: Option<String>,
    /// Set favordynmods on the cgroup2 root at start-up, so that moving a
    /// new sandbox into its cgroups does not wait for an RCU grace period
    /// (see `sandbox::cgroup::favor_dynamic_moves`).
    pub favor_cgroup_moves: bool,
    /// How long the event loop polls for completions before it sleeps
    /// (zero: it sleeps at once). Costs up to this much CPU each time the
    /// loop runs out of work; saves waking an idle, halted CPU for the
    /// next message.
    pub busy_poll: Duration,
    /// The AWS region sandboxes report (`AWS_REGION`, ARNs).
    pub region: String,
}

impl DaemonConfig {
    pub const DEFAULT_SOCKET: &'static str = "/run/sprout/sprout.sock";
    pub const DEFAULT_STATE_DIR: &'static str = "/var/lib/sprout";
    pub const DEFAULT_MAX_PAYLOAD: usize = 6 * 1024 * 1024;
    pub const DEFAULT_POOL_MIN: usize = 1;
    pub const DEFAULT_POOL_MAX: usize = 8;
    pub const DEFAULT_MAX_CALL_DEPTH: u32 = 16;
    pub const DEFAULT_BUSY_POLL_US: u64 = 100;
    pub const DEFAULT_TRACE_CAPACITY: usize = crate::trace::SpanStore::DEFAULT_CAPACITY;
}
