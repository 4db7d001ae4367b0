//! The nested-call round trip: a warm function invoking another warm
//! function synchronously through its runtime, over its ring, held against
//! a top-level warm invoke of the same callee.
//!
//! How it is measured: the caller (`benches/nested_native.rs`, or
//! `benches/functions/nested-python/app.py`) runs [`CALLS_PER_RUN`] calls
//! of the warm echo function of its own runtime (`warm-native`,
//! `warm-python`, the very functions of the warm round trip) in one handler
//! run, and times each call itself around its runtime's invoke
//! (`Context::invoke`, `context.invoke`) with a monotonic clock; the run
//! returns those durations. So each sample is one nested call as its caller
//! sees it — the CALL pushed on the caller's ring, the daemon routing it as
//! an invocation (trace context, span) to the callee's sandbox, the callee
//! running, and the CALL_RESULT back — and nothing of the caller's own
//! invocation (its request, its handler run, its response) is in it. Every
//! call of a run is kept, the first included. Payload: the same 64-byte
//! JSON string the top-level figure sends.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use sprout::client::Client;
use sprout::protocol::DeploySpec;

use crate::functions::{build_bench_executable, install_stripped, Runtime};
use crate::markdown::{q, t};
use crate::results::{size_label, Results, SMALL};
use crate::stats::{Samples, Summary};

/// Calls per handler run of the caller.
pub const CALLS_PER_RUN: usize = 100;

/// The callers' code for this run.
pub struct Callers {
    native_dir: PathBuf,
    python_dir: PathBuf,
}

impl Callers {
    /// Build the native caller and lay out both under `work`.
    pub fn prepare(work: &Path) -> Callers {
        let native_dir = work.join("nested-native");
        std::fs::create_dir_all(&native_dir).expect("create the native caller's dir");
        install_stripped(
            &build_bench_executable("nested-native"),
            &native_dir.join("bootstrap"),
        );
        let python_dir = work.join("nested-python");
        std::fs::create_dir_all(&python_dir).expect("create the python caller's dir");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/functions/nested-python/app.py"),
            python_dir.join("app.py"),
        )
        .expect("copy the python caller");
        Callers {
            native_dir,
            python_dir,
        }
    }

    /// Deploy both callers and run each once (its cold start).
    pub fn deploy(&self, client: &Client) {
        for runtime in Runtime::ALL {
            let (handler, code) = match runtime {
                Runtime::Native => (None, &self.native_dir),
                Runtime::Python => (Some("app.handler"), &self.python_dir),
            };
            let spec: DeploySpec = serde_json::from_value(json!({
                "name": caller(runtime),
                "runtime": runtime.as_str(),
                "handler": handler,
                "code": code.to_str().expect("utf-8 work dir"),
            }))
            .expect("a valid deploy spec");
            client.deploy(&spec).expect("deploy the caller");
            run(client, runtime, 1);
        }
    }
}

fn caller(runtime: Runtime) -> String {
    format!("nested-{}", runtime.as_str())
}

/// The callee: the warm round trip's echo function of the same runtime.
fn callee(runtime: Runtime) -> String {
    format!("warm-{}", runtime.as_str())
}

/// One run of the caller making `calls` nested calls; their durations.
fn run(client: &Client, runtime: Runtime, calls: usize) -> Vec<Duration> {
    let event = json!({ "target": callee(runtime), "calls": calls, "size": SMALL });
    let response = client
        .invoke(&caller(runtime), event.to_string().as_bytes())
        .expect("invoke the caller");
    assert!(response.error.is_none(), "{:?}", response.error);
    let out: Value = serde_json::from_slice(&response.result).expect("the caller's JSON");
    let ns = out["ns"].as_array().expect("the caller's timings");
    assert_eq!(ns.len(), calls);
    ns.iter()
        .map(|n| Duration::from_nanos(n.as_u64().expect("nanoseconds")))
        .collect()
}

/// At least `n` nested calls, in runs of [`CALLS_PER_RUN`].
pub fn sample(client: &Client, runtime: Runtime, n: usize) -> Vec<Duration> {
    (0..n.div_ceil(CALLS_PER_RUN))
        .flat_map(|_| run(client, runtime, CALLS_PER_RUN))
        .collect()
}

/// The nested call's and the top-level warm invoke's summaries, and the
/// ratios of their p50 and p99.
struct Row {
    runtime: Runtime,
    nested: Summary,
    top: Option<Summary>,
}

impl Row {
    fn ratio(&self, pick: fn(&Summary) -> f64) -> Option<f64> {
        self.top.map(|top| pick(&self.nested) / pick(&top))
    }
}

fn rows(r: &Results) -> Vec<Row> {
    r.nested
        .iter()
        .filter_map(|(&runtime, samples)| {
            Some(Row {
                runtime,
                nested: samples.summary()?,
                top: r.warm.get(&(runtime, SMALL)).and_then(Samples::summary),
            })
        })
        .collect()
}

fn times(ratio: Option<f64>, sign: &str) -> String {
    ratio.map(|x| format!("{x:.2}{sign}")).unwrap_or_default()
}

/// The nested call's p50 (microseconds), for the targets.
pub fn p50(r: &Results, runtime: Runtime) -> Option<f64> {
    r.nested
        .get(&runtime)
        .and_then(Samples::summary)
        .map(|s| s.p50)
}

pub fn print(r: &Results) {
    let rows = rows(r);
    if rows.is_empty() {
        return;
    }
    println!(
        "\n== nested call round trip, warm, {} (microseconds; timed by the calling handler around \
         its runtime's invoke, {CALLS_PER_RUN} calls per run; x top = ratio to the top-level warm \
         invoke of the same callee)",
        size_label(SMALL)
    );
    println!(
        "{:<34} {:>6} {:>9} {:>9} {:>9} {:>9}  {:>12} {:>12}",
        "", "n", "p50", "p90", "p99", "max", "x top p50", "x top p99"
    );
    for row in &rows {
        let s = &row.nested;
        let p99 = if s.enough_for(0.99) {
            format!("{:.1}", s.p99)
        } else {
            format!("({:.1})", s.p99)
        };
        println!(
            "{:<34} {:>6} {:>9.1} {:>9.1} {:>9} {:>9.1}  {:>12} {:>12}",
            format!("nested call {0} -> {0}", row.runtime.as_str()),
            s.n,
            s.p50,
            s.p90,
            p99,
            s.max,
            times(row.ratio(|s| s.p50), "x"),
            times(row.ratio(|s| s.p99), "x"),
        );
    }
}

pub fn to_json(r: &Results) -> Value {
    rows(r)
        .iter()
        .map(|row| {
            json!({
                "runtime": row.runtime.as_str(),
                "caller": caller(row.runtime),
                "callee": callee(row.runtime),
                "payload_bytes": SMALL,
                "calls_per_handler_run": CALLS_PER_RUN,
                "measured": "each call timed by the calling handler around its runtime's invoke",
                "latency": row.nested.to_json(),
                "ratio_p50_to_top_level_warm": row.ratio(|s| s.p50),
                "ratio_p99_to_top_level_warm": row.ratio(|s| s.p99),
            })
        })
        .collect()
}

pub fn markdown(r: &Results, md: &mut String) {
    let rows = rows(r);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n**Nested call round trip**, warm, {} (a handler invoking the echo function above through its runtime, {CALLS_PER_RUN} calls per handler run, each timed by the caller around its invoke):\n",
        size_label(SMALL)
    );
    let _ = writeln!(
        md,
        "| caller → callee | n | p50 | p90 | p99 | p50 ÷ top-level warm | p99 ÷ top-level warm |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for row in &rows {
        let s = &row.nested;
        let _ = writeln!(
            md,
            "| {0} → {0} | {1} | {2} | {3} | {4} | {5} | {6} |",
            row.runtime.as_str(),
            s.n,
            t(s.p50),
            t(s.p90),
            q(s, 0.99, s.p99),
            times(row.ratio(|s| s.p50), "×"),
            times(row.ratio(|s| s.p99), "×"),
        );
    }
}
