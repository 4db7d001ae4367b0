//! Bodies of the Trace and Profile frames: recorded spans of invocations
//! and per-function profiles built from them.

use serde::{Deserialize, Serialize};

use super::ErrorKind;

/// One finished invocation, as the daemon recorded it. Times are µs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanInfo {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    pub invocation_id: u64,
    /// The calling invocation, for a nested call.
    #[serde(default)]
    pub parent_id: Option<u64>,
    /// The client's `traceparent` span id (16 hex digits), for a root that
    /// joined an outside trace.
    #[serde(default)]
    pub remote_parent: Option<String>,
    pub depth: u32,
    pub function: String,
    pub version: u64,
    /// 0 if it never reached a sandbox.
    pub sandbox: u64,
    pub cold: bool,
    /// A fire-and-forget call: its caller did not wait for it.
    pub detached: bool,
    /// When the daemon accepted it, µs since the Unix epoch.
    pub start_unix_us: u64,
    /// Waiting in its function's queue (not for this sandbox's start).
    pub queue_us: u64,
    /// Waiting for its cold sandbox to be had (taken from the pool or
    /// created), 0 when warm.
    pub acquire_us: u64,
    /// Its cold sandbox's function init, 0 when warm.
    pub init_us: u64,
    /// The handler's run (nested calls included).
    pub run_us: u64,
    /// Accepted to answered.
    pub total_us: u64,
    /// `None`: it succeeded.
    #[serde(default)]
    pub error: Option<ErrorKind>,
}

/// Every recorded span of one trace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceReport {
    pub trace_id: String,
    /// In the order the daemon accepted them.
    pub spans: Vec<SpanInfo>,
    /// Spans the bounded store has dropped since the daemon started (some
    /// of this trace's may be among them).
    pub dropped: u64,
}

/// The 50th and 99th percentiles of one phase, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseStats {
    pub p50_us: u64,
    pub p99_us: u64,
}

/// A function this one called, or that called it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallEdge {
    pub function: String,
    pub calls: u64,
    /// For a callee: the share (0 to 1) of this function's handler time
    /// spent waiting on synchronous calls to it. 0 for callers.
    pub wait_share: f64,
}

/// One function over its recorded spans.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileReport {
    pub function: String,
    pub count: u64,
    pub errors: u64,
    pub cold_starts: u64,
    pub queue: PhaseStats,
    pub acquire: PhaseStats,
    /// Over cold starts only.
    pub init: PhaseStats,
    pub run: PhaseStats,
    pub total: PhaseStats,
    pub callees: Vec<CallEdge>,
    pub callers: Vec<CallEdge>,
}

impl ProfileReport {
    pub fn error_rate(&self) -> f64 {
        ratio(self.errors, self.count)
    }

    pub fn cold_start_rate(&self) -> f64 {
        ratio(self.cold_starts, self.count)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
