//! What `sprout stats` reports: counters kept per function name as
//! invocations move through the daemon, and the present state of queues,
//! sandboxes and the pool.

use std::time::Instant;

use super::invoke::{micros, Invocation};
use super::Daemon;
use crate::protocol::{DaemonStats, ErrorKind, FunctionStats, StatsReport};
use crate::scheduler::{Refused, Samples};

/// One function's counters, carried across its versions.
#[derive(Debug, Default)]
pub(super) struct FnCounters {
    pub invocations: u64,
    cold_from_pool: u64,
    cold_new: u64,
    warm_hits: u64,
    throttles: u64,
    timeouts: u64,
    errors: u64,
    affinity_hits: u64,
    affinity_misses: u64,
    pub reaped: u64,
    /// Warm invocations on sandboxes that pre-warming started.
    pub cold_starts_avoided: u64,
    queue_wait: Samples,
    init: Samples,
    run: Samples,
}

impl FnCounters {
    /// An invocation was refused before it was queued.
    pub fn refused(&mut self, refused: Refused) {
        if let Refused::Throttled { .. } = refused {
            self.throttles += 1;
        }
    }

    /// An invocation went to a sandbox (`from_pool`: the sandbox came to
    /// its function from the pool).
    pub fn dispatched(&mut self, invocation: &Invocation, from_pool: bool, now: Instant) {
        self.queue_wait
            .record(micros(now.saturating_duration_since(invocation.accepted())));
        match (invocation.cold(), from_pool) {
            (false, _) => self.warm_hits += 1,
            (true, true) => self.cold_from_pool += 1,
            (true, false) => self.cold_new += 1,
        }
        if invocation.has_key() {
            if invocation.affinity_hit() {
                self.affinity_hits += 1;
            } else {
                self.affinity_misses += 1;
            }
        }
    }

    /// An accepted invocation was answered.
    pub fn finished(&mut self, invocation: &Invocation, now: Instant, error: Option<ErrorKind>) {
        if let Some(dispatched) = invocation.dispatched() {
            self.run
                .record(micros(now.saturating_duration_since(dispatched)));
        }
        match error {
            None => {}
            Some(ErrorKind::Throttled) => self.throttles += 1,
            Some(kind) => {
                self.errors += 1;
                if kind == ErrorKind::Timeout {
                    self.timeouts += 1;
                }
            }
        }
    }

    /// A sandbox finished loading the function after `since`.
    pub fn initialized(&mut self, since: Instant, now: Instant) {
        self.init
            .record(micros(now.saturating_duration_since(since)));
    }
}

impl Daemon {
    /// Counters of `name` (or of every function) and of the daemon.
    pub(super) fn stats_report(&self, name: Option<&str>) -> Option<StatsReport> {
        let now = Instant::now();
        let names: Vec<&str> = match name {
            Some(name) => vec![self.registry.get(name)?.name.as_str()],
            None => self.registry.list().map(|f| f.name.as_str()).collect(),
        };
        let functions = names
            .into_iter()
            .map(|name| self.function_stats(name, now))
            .collect();
        let (created, destroyed) = self.pool.lifetime_counts();
        Some(StatsReport {
            daemon: DaemonStats {
                uptime_ms: u64::try_from(now.duration_since(self.started).as_millis())
                    .unwrap_or(u64::MAX),
                sandboxes_created: created,
                sandboxes_destroyed: destroyed,
                sandboxes_live: self.pool.len() as u64,
                pool: self.pool.stats(),
                spans_dropped: self.spans.dropped(),
                otlp_exported: self.otlp.as_ref().map_or(0, |o| {
                    o.counters()
                        .exported
                        .load(std::sync::atomic::Ordering::Relaxed)
                }),
                otlp_dropped: self.otlp.as_ref().map_or(0, |o| {
                    o.counters()
                        .dropped
                        .load(std::sync::atomic::Ordering::Relaxed)
                }),
            },
            functions,
        })
    }

    fn function_stats(&self, name: &str, now: Instant) -> FunctionStats {
        let mut stats = FunctionStats {
            name: name.to_owned(),
            version: self.registry.get(name).map_or(0, |f| f.version),
            ..FunctionStats::default()
        };
        if let Some(c) = self.counters.get(name) {
            stats.invocations = c.invocations;
            stats.cold_from_pool = c.cold_from_pool;
            stats.cold_new = c.cold_new;
            stats.cold_starts = c.cold_from_pool + c.cold_new;
            stats.warm_hits = c.warm_hits;
            stats.cold_starts_avoided = c.cold_starts_avoided;
            stats.throttles = c.throttles;
            stats.timeouts = c.timeouts;
            stats.errors = c.errors;
            stats.affinity_hits = c.affinity_hits;
            stats.affinity_misses = c.affinity_misses;
            stats.reaped = c.reaped;
            stats.queue_wait_us = c.queue_wait.percentiles();
            stats.init_us = c.init.percentiles();
            stats.run_us = c.run.percentiles();
        }
        // Sandboxes of every version still alive (an old version's finish
        // their invocations); the queue of the live version.
        for ((fname, version), state) in &self.functions {
            if fname != name {
                continue;
            }
            let q = &state.queue;
            stats.sandboxes_live += q.live() as u64;
            stats.sandboxes_starting += q.starting() as u64;
            stats.sandboxes_idle += q.idle_count() as u64;
            stats.sandboxes_busy += q.busy_count() as u64;
            if *version == stats.version {
                let (prepared, preparing) = q.prepared(now);
                stats.prepared = prepared as u64;
                stats.preparing = preparing as u64;
                stats.queue_depth = q.queued() as u64;
                stats.queue_peak = q.peak() as u64;
                stats.affinity_keys = q.key_count() as u64;
            }
        }
        stats
    }
}
