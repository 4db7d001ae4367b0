//! Measurements through a real sprout daemon: warm round trips, cold
//! starts (from the pool and with the pool empty) and throughput.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sprout::client::Client;
use sprout::protocol::{DeploySpec, FunctionStats, StatsReport};

use crate::daemon::Daemon;
use crate::functions::{Functions, Runtime};

/// `n` sequential round trips of `payload` to a warm function.
pub fn warm(client: &Client, name: &str, payload: &[u8], n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let start = Instant::now();
            let response = client.invoke(name, payload).expect("invoke");
            let elapsed = start.elapsed();
            assert!(response.error.is_none(), "{:?}", response.error);
            assert_eq!(response.result.len(), payload.len(), "echoed payload");
            assert!(!response.cold, "a warm invocation started a sandbox");
            elapsed
        })
        .collect()
}

/// A cold start as the client saw it, and as the daemon reported it
/// (`total_us`: from reading the request to writing the response).
pub type Cold = (Duration, Duration);

/// A just-deployed function's first invocation.
pub struct First {
    pub client: Duration,
    /// `total_us`: from reading the request to writing the response.
    pub daemon: Duration,
    /// Its sandbox came from the pool (else it was created for it).
    pub from_pool: bool,
}

/// Deploy `spec`, time its first invocation, read where its sandbox came
/// from; remove it.
pub fn first_invocation(client: &Client, spec: &DeploySpec) -> First {
    let name = &spec.name;
    client.deploy(spec).expect("deploy");
    let start = Instant::now();
    let response = client.invoke(name, b"{}").expect("invoke");
    let elapsed = start.elapsed();
    assert!(response.error.is_none(), "{:?}", response.error);
    assert!(response.cold, "the first invocation was not a cold start");
    let report = client.stats(Some(name)).expect("stats");
    let stats = function_stats(&report, name);
    assert_eq!(stats.cold_from_pool + stats.cold_new, 1, "{stats:?}");
    client.remove(name).expect("remove");
    First {
        client: elapsed,
        daemon: Duration::from_micros(response.total_us),
        from_pool: stats.cold_from_pool == 1,
    }
}

/// `name`'s counters in `report`.
pub fn function_stats<'a>(report: &'a StatsReport, name: &str) -> &'a FunctionStats {
    report
        .functions
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no stats for {name}"))
}

/// One cold start served from the pool. Waits for the pool to refill what
/// the sample took, so every sample finds a pooled sandbox.
pub fn cold_from_pool(
    daemon: &Daemon,
    client: &Client,
    functions: &Functions,
    runtime: Runtime,
    seq: usize,
) -> Cold {
    let spec = functions.spec(&format!("cold-pool-{}-{seq}", runtime.as_str()), runtime);
    cold_from_pool_of(daemon, client, &spec)
}

/// [`cold_from_pool`] of any function (its runtime names the pool).
pub fn cold_from_pool_of(daemon: &Daemon, client: &Client, spec: &DeploySpec) -> Cold {
    let pooled = daemon.pooled(&spec.runtime).len();
    let first = first_invocation(client, spec);
    assert!(first.from_pool, "a pooled cold start created its sandbox");
    assert!(
        daemon.wait_pooled(&spec.runtime, pooled + 1, Duration::from_secs(10)),
        "the pool did not refill within 10 s"
    );
    (first.client, first.daemon)
}

/// One cold start on a daemon without a pool: a sandbox is created for it.
pub fn cold_empty_pool(
    client: &Client,
    functions: &Functions,
    runtime: Runtime,
    seq: usize,
) -> Cold {
    let first = first_invocation(
        client,
        &functions.spec(&format!("cold-empty-{}-{seq}", runtime.as_str()), runtime),
    );
    assert!(!first.from_pool, "a daemon without a pool served from it");
    // Let the removed sandbox's teardown finish before the next sample.
    std::thread::sleep(Duration::from_millis(10));
    (first.client, first.daemon)
}

/// Warm invocations per second with `in_flight` threads spread over
/// `clients` (connections), after `warmup` at the same concurrency (which
/// also starts the sandboxes it needs).
pub fn throughput(
    clients: &[Client],
    name: &str,
    payload: &[u8],
    in_flight: usize,
    warmup: Duration,
    measure: Duration,
) -> f64 {
    let run = |length: Duration| -> (u64, Duration) {
        let done = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let start = Instant::now();
        std::thread::scope(|s| {
            for thread in 0..in_flight {
                let client = &clients[thread % clients.len()];
                let (done, stop) = (&done, &stop);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let response = client.invoke(name, payload).expect("invoke");
                        assert!(response.error.is_none(), "{:?}", response.error);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            std::thread::sleep(length);
            stop.store(true, Ordering::Relaxed);
        });
        (done.load(Ordering::Relaxed), start.elapsed())
    };
    run(warmup);
    let (count, elapsed) = run(measure);
    count as f64 / elapsed.as_secs_f64()
}
