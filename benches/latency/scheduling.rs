//! Scheduling figures: how long a pre-trigger takes to give a just-deployed
//! function N warm sandboxes, and cold starts under a steady stream of new
//! functions while the pool adapts to their rate.
//!
//! Both are read through the client protocol only: `prepared` in a
//! function's stats says when a pre-trigger is done, the per-function
//! `cold_from_pool`/`cold_new` counters say where a cold start's sandbox
//! came from, and the daemon's pool stats give the pool's target as it
//! moves.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sprout::client::Client;
use sprout::protocol::{PoolStats, StatsReport};
use sprout::registry::Function;

use crate::daemon::Daemon;
use crate::functions::{Functions, Runtime};
use crate::sprout_runs::{first_invocation, function_stats, First};
use crate::stats::{us, Samples, Summary};

/// Sandboxes asked for by one pre-trigger (at most a function's default
/// concurrency, 10).
pub const PRETRIGGER_COUNTS: [usize; 3] = [1, 4, 8];
/// A pre-trigger's TTL: longer than any sample, so no pin ends early.
const PRETRIGGER_TTL_SECS: u32 = 60;
/// How often a pre-trigger's progress is polled: the resolution of its
/// figure.
const PRETRIGGER_POLL: Duration = Duration::from_micros(100);
/// How often the pool's target is sampled during a stream.
const POOL_SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// The adaptive pool of the stream daemons (`serve`'s defaults), and the
/// fixed pool it is compared with.
pub const ADAPTIVE_POOL: (usize, usize) = (1, 8);
pub const FIXED_POOL: usize = 1;
/// The longest wait for a daemon to settle or a pre-trigger to finish.
const PATIENCE: Duration = Duration::from_secs(60);

/// The mean gap between new functions in a stream. Arrivals are random
/// (exponential gaps, as from independent clients), so two often come
/// closer together than one sandbox takes to boot (~10-25 ms native,
/// ~30-130 ms python here): a pool of one runs dry then, while the mean
/// rate stays within what the machine can create.
pub fn stream_interval(runtime: Runtime) -> Duration {
    match runtime {
        Runtime::Native => Duration::from_millis(20),
        Runtime::Python => Duration::from_millis(40),
    }
}

/// When the functions of a stream arrive: exponential gaps of mean `mean`
/// within `length`, drawn from `seed` (xorshift64), so every run sees the
/// same streams and both pool modes of a repeat the same one.
fn arrivals(mean: Duration, length: Duration, seed: u64) -> Vec<Duration> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut at = 0.0;
    let mut out = Vec::new();
    loop {
        at -= (1.0 - uniform()).ln() * mean.as_secs_f64();
        if at >= length.as_secs_f64() {
            return out;
        }
        out.push(Duration::from_secs_f64(at));
    }
}

/// How the stream daemon's pool is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PoolMode {
    /// `--pool-min 1 --pool-max 8`.
    Adaptive,
    /// `--pool-size 1`.
    Fixed,
}

impl PoolMode {
    pub const ALL: [PoolMode; 2] = [PoolMode::Adaptive, PoolMode::Fixed];

    pub fn label(self) -> String {
        match self {
            PoolMode::Adaptive => format!("adaptive {}..{}", ADAPTIVE_POOL.0, ADAPTIVE_POOL.1),
            PoolMode::Fixed => format!("fixed {FIXED_POOL}"),
        }
    }

    pub fn start(self, work: &std::path::Path) -> Daemon {
        match self {
            PoolMode::Adaptive => Daemon::start_adaptive(work, ADAPTIVE_POOL.0, ADAPTIVE_POOL.1),
            PoolMode::Fixed => Daemon::start(work, FIXED_POOL),
        }
    }
}

/// The pre-triggers of one (runtime, count).
#[derive(Debug, Default)]
pub struct PretriggerFigure {
    /// From the pre-trigger request to the stats showing `count` prepared.
    pub latency: Samples,
    /// Sandboxes the pre-triggers took from the pool; the rest were created.
    pub from_pool: u64,
    pub sandboxes: u64,
}

/// What the pool of a stream's shape looked like at one moment.
#[derive(Debug, Clone, Copy)]
pub struct PoolPoint {
    pub at: Duration,
    pub target: u64,
    pub idle: u64,
    pub booting: u64,
    pub cold_start_rate: f64,
}

/// The first invocations of one stream configuration, over all repeats.
#[derive(Debug, Default)]
pub struct StreamFigure {
    /// Client side, every first invocation.
    pub latency: Samples,
    /// As the daemon reported them (`total_us`).
    pub daemon: Samples,
    /// Client side, split by where the sandbox came from.
    pub pooled: Samples,
    pub created: Samples,
    /// Highest pool target seen in any repeat.
    pub target_peak: u64,
    /// Per repeat, from the stream's start to its highest target.
    pub to_peak: Vec<Duration>,
    /// The pool during the last repeat's stream.
    pub timeline: Vec<PoolPoint>,
}

#[derive(Debug, Default)]
pub struct Figures {
    /// The fixed pool of the daemon the pre-triggers ran on.
    pub pretrigger_pool: usize,
    pub pretrigger: BTreeMap<(Runtime, usize), PretriggerFigure>,
    /// The stream's length per repeat.
    pub stream_length: Duration,
    pub streams: BTreeMap<(Runtime, PoolMode), StreamFigure>,
}

/// The pool of `runtime`'s shape for functions of the default memory.
fn shape(report: &StatsReport, runtime: Runtime) -> PoolStats {
    report
        .daemon
        .pool
        .iter()
        .find(|p| p.runtime == runtime.as_str() && p.memory_mb == Function::DEFAULT_MEMORY_MB)
        .cloned()
        .unwrap_or_else(|| panic!("the daemon keeps no {} pool", runtime.as_str()))
}

/// Wait until every pool is full at its target and no other sandbox lives
/// (the previous sample's have exited), so every sample starts alike.
pub fn wait_at_rest(client: &Client) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let report = client.stats(None).expect("stats");
        let pooled: u64 = report.daemon.pool.iter().map(|p| p.idle).sum();
        let full = report
            .daemon
            .pool
            .iter()
            .all(|p| p.idle >= p.target && p.booting == 0);
        if full && report.daemon.sandboxes_live == pooled {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not settle: {:?}",
            report.daemon
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Pre-trigger `count` sandboxes of a just-deployed function and time until
/// the daemon reports them prepared; then check that `count` concurrent
/// invocations are all warm. Returns the time and how many of the
/// sandboxes came from the pool.
pub fn pretrigger(
    client: &Client,
    functions: &Functions,
    runtime: Runtime,
    count: usize,
    name: &str,
) -> (Duration, u64) {
    client
        .deploy(&functions.spec(name, runtime))
        .expect("deploy");
    wait_at_rest(client);
    let taken_before = shape(&client.stats(Some(name)).expect("stats"), runtime).taken;
    let start = Instant::now();
    let accepted = client
        .pretrigger(name, count as u32, Some(PRETRIGGER_TTL_SECS))
        .expect("pretrigger");
    assert_eq!(accepted.count as usize, count, "the pre-trigger was capped");
    let (elapsed, report) = loop {
        let report = client.stats(Some(name)).expect("stats");
        let elapsed = start.elapsed();
        if function_stats(&report, name).prepared as usize >= count {
            break (elapsed, report);
        }
        assert!(
            elapsed < PATIENCE,
            "a pre-trigger of {count} did not finish: {:?}",
            function_stats(&report, name)
        );
        std::thread::sleep(PRETRIGGER_POLL);
    };
    let from_pool = shape(&report, runtime).taken - taken_before;

    // The measurement is only right if those sandboxes are really warm.
    let responses: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .map(|_| s.spawn(|| client.invoke(name, b"{}").expect("invoke")))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("invoking thread"))
            .collect()
    });
    for response in &responses {
        assert!(response.error.is_none(), "{:?}", response.error);
        assert!(
            !response.cold,
            "an invocation after a completed pre-trigger of {count} was cold"
        );
    }
    let after = client.stats(Some(name)).expect("stats");
    let stats = function_stats(&after, name);
    assert_eq!(
        (stats.cold_starts, stats.warm_hits),
        (0, count as u64),
        "the daemon counted cold starts after a completed pre-trigger"
    );
    client.remove(name).expect("remove");
    (elapsed, from_pool)
}

/// One repeat's pre-triggers: every runtime and count, `samples` each.
pub fn pretrigger_repeat(
    client: &Client,
    functions: &Functions,
    samples: usize,
    figures: &mut Figures,
    seq: &mut usize,
) {
    for runtime in Runtime::ALL {
        for count in PRETRIGGER_COUNTS {
            let figure = figures.pretrigger.entry((runtime, count)).or_default();
            let mut times = Vec::with_capacity(samples);
            for _ in 0..samples {
                *seq += 1;
                let name = format!("pretrigger-{}-{count}-{seq}", runtime.as_str());
                let (elapsed, from_pool) = pretrigger(client, functions, runtime, count, &name);
                times.push(elapsed);
                figure.from_pool += from_pool;
                figure.sandboxes += count as u64;
            }
            figure.latency.push_repeat(times);
        }
    }
    wait_at_rest(client);
}

/// Pre-trigger each runtime once, unrecorded, and let the daemon settle.
pub fn warm_up(client: &Client, functions: &Functions) {
    for runtime in Runtime::ALL {
        let name = format!("pretrigger-{}-warm-up", runtime.as_str());
        pretrigger(client, functions, runtime, 1, &name);
    }
    wait_at_rest(client);
}

/// `repeats` streams of `length` per runtime and pool mode, interleaved.
pub fn streams(
    work: &std::path::Path,
    functions: &Functions,
    repeats: usize,
    length: Duration,
    figures: &mut Figures,
) {
    figures.stream_length = length;
    for repeat in 0..repeats {
        for runtime in Runtime::ALL {
            let arrivals = arrivals(stream_interval(runtime), length, repeat as u64 + 1);
            for mode in PoolMode::ALL {
                let figure = figures.streams.entry((runtime, mode)).or_default();
                stream(work, functions, runtime, mode, &arrivals, figure);
            }
        }
    }
}

/// A stream of new `runtime` functions, one at each of `arrivals`, against a fresh daemon with the pool `mode`; each is deployed
/// and invoked once (on its own thread, so a slow one does not hold up the
/// next). The pool is sampled throughout.
fn stream(
    work: &std::path::Path,
    functions: &Functions,
    runtime: Runtime,
    mode: PoolMode,
    arrivals: &[Duration],
    figure: &mut StreamFigure,
) {
    let daemon = mode.start(work);
    let client = Client::connect(&daemon.socket).expect("connect");
    let observer = Client::connect(&daemon.socket).expect("connect");
    wait_at_rest(&client);
    let n = arrivals.len();
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (firsts, timeline) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut points = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let pool = shape(&observer.stats(None).expect("stats"), runtime);
                points.push(PoolPoint {
                    at: start.elapsed(),
                    target: pool.target,
                    idle: pool.idle,
                    booting: pool.booting,
                    cold_start_rate: pool.cold_start_rate,
                });
                std::thread::sleep(POOL_SAMPLE_EVERY);
            }
            points
        });
        let mut workers = Vec::with_capacity(n);
        for (i, &at) in arrivals.iter().enumerate() {
            let at = start + at;
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            let name = format!("stream-{}-{i}", runtime.as_str());
            let client = &client;
            let spec = functions.spec(&name, runtime);
            workers.push(s.spawn(move || first_invocation(client, &spec)));
        }
        let firsts: Vec<First> = workers
            .into_iter()
            .map(|w| w.join().expect("stream worker"))
            .collect();
        stop.store(true, Ordering::Relaxed);
        (firsts, sampler.join().expect("pool sampler"))
    });
    let mut split = (Vec::new(), Vec::new());
    for f in &firsts {
        if f.from_pool {
            split.0.push(f.client);
        } else {
            split.1.push(f.client);
        }
    }
    figure
        .latency
        .push_repeat(firsts.iter().map(|f| f.client).collect());
    figure
        .daemon
        .push_repeat(firsts.iter().map(|f| f.daemon).collect());
    figure.pooled.push_repeat(split.0);
    figure.created.push_repeat(split.1);
    let peak = timeline.iter().map(|p| p.target).max().unwrap_or(0);
    if let Some(first) = timeline.iter().find(|p| p.target == peak) {
        figure.to_peak.push(first.at);
    }
    figure.target_peak = figure.target_peak.max(peak);
    figure.timeline = timeline;
}

impl StreamFigure {
    /// The median over the repeats of the time to the highest target.
    pub fn to_peak_median(&self) -> Option<Duration> {
        let mut times = self.to_peak.clone();
        times.sort();
        (!times.is_empty()).then(|| crate::stats::quantile(&times, 0.5))
    }

    /// Share of first invocations whose sandbox came from the pool.
    pub fn pooled_share(&self) -> f64 {
        let pooled = self.pooled.all_sorted().len();
        let all = self.latency.all_sorted().len();
        if all == 0 {
            0.0
        } else {
            pooled as f64 / all as f64
        }
    }
}

fn summary_json(s: &Samples) -> Option<Value> {
    s.summary().map(Summary::to_json)
}

impl Figures {
    pub fn print(&self) {
        println!(
            "\n== pre-trigger to N warm sandboxes, just-deployed function, daemon with a fixed pool of {} (microseconds)",
            self.pretrigger_pool
        );
        println!(
            "{:<22} {:>6} {:>10} {:>10} {:>10} {:>10}",
            "", "n", "p50", "p99", "max", "from pool"
        );
        for ((runtime, count), f) in &self.pretrigger {
            if let Some(s) = f.latency.summary() {
                println!(
                    "{:<22} {:>6} {:>10.1} {:>10} {:>10.1} {:>9.0}%",
                    format!("{} N={count}", runtime.as_str()),
                    s.n,
                    s.p50,
                    paren(&s, s.p99),
                    s.max,
                    100.0 * f.from_pool as f64 / f.sandboxes.max(1) as f64,
                );
            }
        }
        println!(
            "\n== cold starts under a stream of new functions ({:.1} s per repeat; microseconds)",
            self.stream_length.as_secs_f64()
        );
        println!(
            "{:<34} {:>6} {:>10} {:>10} {:>12} {:>12} {:>10} {:>11} {:>11} {:>18}",
            "",
            "n",
            "p50",
            "p99",
            "daemon p50",
            "daemon p99",
            "from pool",
            "pooled p50",
            "created p50",
            "pool target"
        );
        for ((runtime, mode), f) in &self.streams {
            let Some(s) = f.latency.summary() else {
                continue;
            };
            let d = f.daemon.summary();
            let p50 = |x: &Samples| {
                x.summary()
                    .map(|s| format!("{:.1}", s.p50))
                    .unwrap_or("-".into())
            };
            println!(
                "{:<34} {:>6} {:>10.1} {:>10} {:>12} {:>12} {:>9.0}% {:>11} {:>11} {:>18}",
                format!(
                    "{} 1 per {} ms, {}",
                    runtime.as_str(),
                    stream_interval(*runtime).as_millis(),
                    mode.label()
                ),
                s.n,
                s.p50,
                paren(&s, s.p99),
                d.map(|d| format!("{:.1}", d.p50)).unwrap_or_default(),
                d.map(|d| paren(&d, d.p99)).unwrap_or_default(),
                100.0 * f.pooled_share(),
                p50(&f.pooled),
                p50(&f.created),
                target(f),
            );
        }
        println!("(pool target: at the start → highest, and the median time to reach it; a value in parentheses has fewer than 10 samples beyond its percentile)");
    }

    pub fn to_json(&self) -> Value {
        json!({
            "pretrigger": {
                "daemon_pool_size": self.pretrigger_pool,
                "ttl_secs": PRETRIGGER_TTL_SECS,
                "poll_interval_us": us(PRETRIGGER_POLL),
                "figures": self.pretrigger.iter().map(|((rt, count), f)| json!({
                    "runtime": rt.as_str(),
                    "count": count,
                    "to_prepared": summary_json(&f.latency),
                    "sandboxes_from_pool": f.from_pool,
                    "sandboxes": f.sandboxes,
                    "then_concurrent_invocations_all_warm": true,
                })).collect::<Vec<_>>(),
            },
            "cold_start_stream": {
                "seconds_per_repeat": self.stream_length.as_secs_f64(),
                "arrivals": "exponential gaps (Poisson), one fixed seed per repeat, the same for both pools",
                "pool_sample_interval_ms": POOL_SAMPLE_EVERY.as_millis() as u64,
                "figures": self.streams.iter().map(|((rt, mode), f)| json!({
                    "runtime": rt.as_str(),
                    "pool": match mode {
                        PoolMode::Adaptive => json!({"min": ADAPTIVE_POOL.0, "max": ADAPTIVE_POOL.1}),
                        PoolMode::Fixed => json!({"min": FIXED_POOL, "max": FIXED_POOL}),
                    },
                    "mean_interval_ms": stream_interval(*rt).as_millis() as u64,
                    "first_invocation": summary_json(&f.latency),
                    "daemon_total": summary_json(&f.daemon),
                    "from_pool": summary_json(&f.pooled),
                    "newly_created": summary_json(&f.created),
                    "share_from_pool": f.pooled_share(),
                    "pool_target_peak": f.target_peak,
                    "pool_target_peak_reached_after_ms_median":
                        f.to_peak_median().map(|d| d.as_secs_f64() * 1e3),
                    "pool_last_repeat": f.timeline.iter().map(|p| json!({
                        "at_ms": p.at.as_secs_f64() * 1e3,
                        "target": p.target,
                        "idle": p.idle,
                        "booting": p.booting,
                        "cold_start_rate": p.cold_start_rate,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            },
        })
    }

    /// The Markdown tables of `--markdown`.
    pub fn render(&self, md: &mut String, t: impl Fn(f64) -> String) {
        let q = |s: &Summary, value: f64| {
            if s.enough_for(0.99) {
                t(value)
            } else {
                format!("*{}*", t(value))
            }
        };
        let _ = writeln!(
            md,
            "\n**Pre-trigger to N warm sandboxes**: a just-deployed function, `pretrigger(name, N)`, until its stats show N sandboxes prepared (polled every {} µs; daemon with a fixed pool of {} per runtime). Then N concurrent invocations all ran warm (checked every time):\n",
            PRETRIGGER_POLL.as_micros(),
            self.pretrigger_pool
        );
        let _ = writeln!(
            md,
            "| runtime | N | n | p50 | p99 | max | sandboxes from the pool |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for ((runtime, count), f) in &self.pretrigger {
            if let Some(s) = f.latency.summary() {
                let _ = writeln!(
                    md,
                    "| {} | {count} | {} | {} | {} | {} | {:.0}% |",
                    runtime.as_str(),
                    s.n,
                    t(s.p50),
                    q(&s, s.p99),
                    t(s.max),
                    100.0 * f.from_pool as f64 / f.sandboxes.max(1) as f64,
                );
            }
        }
        let _ = writeln!(
            md,
            "\n**Cold starts under a stream of new functions**: new functions arriving at random (exponential gaps of the mean shown; the same arrivals for both pools), each deployed and invoked once, for {:.1} s per repeat on a fresh daemon; the first invocations' latency (client side and as the daemon reports it), the share whose sandbox came from the pool, and the pool's target as it adapted:\n",
            self.stream_length.as_secs_f64()
        );
        let _ = writeln!(
            md,
            "| runtime | mean gap between new functions | pool | n | p50 | p99 | daemon p50 | daemon p99 | from the pool | p50 from the pool | p50 newly created | pool target (median time to its peak) |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for ((runtime, mode), f) in &self.streams {
            let Some(s) = f.latency.summary() else {
                continue;
            };
            let d = f.daemon.summary();
            let p50 = |x: &Samples| x.summary().map(|s| t(s.p50)).unwrap_or("-".into());
            let _ = writeln!(
                md,
                "| {} | {} ms | {} | {} | {} | {} | {} | {} | {:.0}% | {} | {} | {} |",
                runtime.as_str(),
                stream_interval(*runtime).as_millis(),
                mode.label(),
                s.n,
                t(s.p50),
                q(&s, s.p99),
                d.map(|d| t(d.p50)).unwrap_or_default(),
                d.map(|d| q(&d, d.p99)).unwrap_or_default(),
                100.0 * f.pooled_share(),
                p50(&f.pooled),
                p50(&f.created),
                target(f),
            );
        }
    }
}

/// The pool's target: where it started, its peak and when it got there.
fn target(f: &StreamFigure) -> String {
    let start = f.timeline.first().map_or(0, |p| p.target);
    match f.to_peak_median() {
        Some(after) if f.target_peak > start => format!(
            "{start} → {} in {:.2} s",
            f.target_peak,
            after.as_secs_f64()
        ),
        _ => format!("{start}"),
    }
}

fn paren(s: &Summary, value: f64) -> String {
    if s.enough_for(0.99) {
        format!("{value:.1}")
    } else {
        format!("({value:.1})")
    }
}
