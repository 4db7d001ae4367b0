//! The `StatsReport` body: what the scheduler counted, per function and
//! daemon-wide (docs/protocol.md, "Stats").

use serde::{Deserialize, Serialize};

/// Everything `sprout stats` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    pub daemon: DaemonStats,
    /// One entry per deployed function (only the one asked for, when a
    /// name was given), sorted by name.
    pub functions: Vec<FunctionStats>,
}

/// Daemon-wide counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonStats {
    pub uptime_ms: u64,
    pub sandboxes_created: u64,
    pub sandboxes_destroyed: u64,
    pub sandboxes_live: u64,
    /// One entry per shape the pool keeps.
    pub pool: Vec<PoolStats>,
    /// Spans the bounded trace store dropped (oldest first).
    #[serde(default)]
    pub spans_dropped: u64,
    /// Spans the OTLP collector accepted (`serve --otlp-endpoint`).
    #[serde(default)]
    pub otlp_exported: u64,
    /// Spans not exported: the exporter was behind, or the collector
    /// failed or was down.
    #[serde(default)]
    pub otlp_dropped: u64,
}

/// The pool of tenant-neutral sandboxes of one shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolStats {
    pub runtime: String,
    pub memory_mb: u32,
    /// READY and waiting in the pool.
    pub idle: u64,
    /// Spawned for the pool, not READY yet.
    pub booting: u64,
    /// How many the pool keeps now, between `min` and `max`.
    pub target: u64,
    pub min: u64,
    pub max: u64,
    /// Recent cold starts per second of this shape (exponentially
    /// weighted), which drives `target`.
    pub cold_start_rate: f64,
    /// Sandboxes of this shape handed to a function from the pool.
    pub taken: u64,
    /// Cold starts that found the pool empty and created a sandbox.
    pub misses: u64,
}

/// One function's counters. Counts are since the daemon started serving
/// the function (they carry over redeploys); sandbox and queue figures are
/// the present.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionStats {
    pub name: String,
    pub version: u64,
    /// Invocations accepted into the queue (throttled ones are not).
    pub invocations: u64,
    /// Invocations that waited for a sandbox to load the function.
    pub cold_starts: u64,
    /// ... of which the sandbox came from the pool.
    pub cold_from_pool: u64,
    /// ... of which the sandbox was created for it.
    pub cold_new: u64,
    /// Invocations served by a sandbox that was ready before they came.
    pub warm_hits: u64,
    /// Warm invocations on sandboxes started by pre-warming
    /// (`--prewarm-callees` on a caller): cold starts avoided.
    #[serde(default)]
    pub cold_starts_avoided: u64,
    /// Invocations refused because the queue was full.
    pub throttles: u64,
    /// Invocations that ended in Timeout (in the handler or in the queue).
    pub timeouts: u64,
    /// Accepted invocations that ended in any error (timeouts included).
    pub errors: u64,
    /// Invocations with an affinity key that reached that key's sandbox.
    pub affinity_hits: u64,
    /// Invocations with an affinity key that had no live sandbox for it.
    pub affinity_misses: u64,
    /// Keys with a live sandbox now.
    pub affinity_keys: u64,
    pub sandboxes_live: u64,
    pub sandboxes_starting: u64,
    pub sandboxes_idle: u64,
    pub sandboxes_busy: u64,
    /// Sandboxes kept by a pre-trigger whose init finished.
    pub prepared: u64,
    /// Sandboxes kept by a pre-trigger still loading the function.
    pub preparing: u64,
    /// Sandboxes destroyed after their idle timeout.
    pub reaped: u64,
    pub queue_depth: u64,
    pub queue_peak: u64,
    /// Time in the queue, accept to dispatch.
    pub queue_wait_us: Percentiles,
    /// Time to load the function into a sandbox (assignment or spawn to
    /// INIT_OK).
    pub init_us: Percentiles,
    /// Time in the handler.
    pub run_us: Percentiles,
}

/// Percentiles over a window of recent samples (the last 1024).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples in the window.
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}
