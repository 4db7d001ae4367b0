//! What the run ran on (kernel, cores, cgroup version, event loop, date,
//! commit), and the targets the figures are held against.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::functions::Runtime;
use crate::lambda::{LambdaClient, LambdaCold};
use crate::peers::PeerKind;
use crate::results::{Results, SMALL};

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn cgroup_version() -> String {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2 (unified)".into()
    } else if Path::new("/sys/fs/cgroup/unified").exists() {
        "v1 hybrid (controllers on v1, empty v2 at /sys/fs/cgroup/unified)".into()
    } else {
        "v1".into()
    }
}

pub fn describe(backend: Option<&str>) -> Value {
    let os = read("/etc/os-release").and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
    });
    let cpu = read("/proc/cpuinfo").and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
    });
    let dirty =
        run("git", &["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
    json!({
        "os": os,
        "kernel": read("/proc/sys/kernel/osrelease"),
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cgroup": cgroup_version(),
        "event_loop_backend": backend,
        "python": run("/usr/bin/python3", &["--version"]),
        "date_utc": run("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "commit": run("git", &["rev-parse", "--short=12", "HEAD"]),
        "uncommitted_changes_in_tree": dirty,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

pub fn one_line(m: &Value) -> String {
    let s = |k: &str| m[k].as_str().unwrap_or("?").to_owned();
    format!(
        "{} | {} | kernel {} | {} cores | cgroup {} | event loop {} | {} | commit {}{} | {} build",
        s("date_utc"),
        s("os"),
        s("kernel"),
        m["cores"],
        s("cgroup"),
        s("event_loop_backend"),
        s("cpu"),
        s("commit"),
        if m["uncommitted_changes_in_tree"] == true {
            " (+ uncommitted changes)"
        } else {
            ""
        },
        s("profile"),
    )
}

/// The targets of the core executor issue, each met or not, printed and
/// returned for the JSON.
pub fn targets(r: &Results) -> Value {
    let mut out = Vec::new();
    let mut check = |what: String, value: Option<f64>, limit: Option<f64>| {
        let met = value.zip(limit).map(|(v, l)| v < l);
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        println!(
            "{verdict:<13} {what}: {} (limit {})",
            value.map(|v| format!("{v:.1} us")).unwrap_or("-".into()),
            limit.map(|v| format!("{v:.1} us")).unwrap_or("-".into())
        );
        out.push(json!({ "target": what, "value_us": value, "limit_us": limit, "met": met }));
    };
    println!("\n== targets (p50)");
    let warm = r.warm_p50(Runtime::Native, SMALL);
    check(
        format!("warm native round trip, {SMALL} B, under 50 us"),
        warm,
        Some(50.0),
    );
    check(
        format!("warm native round trip, {SMALL} B, within 3x the floor"),
        warm,
        r.floor_p50(SMALL).map(|f| 3.0 * f),
    );
    for runtime in Runtime::ALL {
        check(
            format!(
                "nested warm {} call, {SMALL} B, under 2x the top-level warm invoke",
                runtime.as_str()
            ),
            crate::nested::p50(r, runtime),
            r.warm_p50(runtime, SMALL).map(|w| 2.0 * w),
        );
    }
    check(
        "cold start from the pool, native, under 2 ms".into(),
        r.cold_pool_p50(Runtime::Native),
        Some(2000.0),
    );
    check(
        "cold start from the pool, python, under 5 ms".into(),
        r.cold_pool_p50(Runtime::Python),
        Some(5000.0),
    );
    for runtime in Runtime::ALL {
        // The runtime's own start-up: the same function started per request
        // by a plain fork+exec, without any isolation.
        let startup = r
            .peers
            .get(&(PeerKind::ForkExec, runtime))
            .and_then(|s| s.summary())
            .map(|s| s.p50);
        check(
            format!(
                "cold start with the pool empty, {}, under 10 ms + the runtime's own start-up (fork+exec p50)",
                runtime.as_str()
            ),
            r.cold_empty_p50(runtime),
            startup.map(|s| 10_000.0 + s),
        );
    }
    for lambda in [LambdaClient::RustRuntime, LambdaClient::Awslambdaric] {
        let (own, ring) = crate::lambda::warm_p50s(r, lambda);
        check(
            format!(
                "Runtime API warm round trip, {}, within 2x the ring runtime of the same language",
                lambda.as_str()
            ),
            own,
            ring.map(|w| 2.0 * w),
        );
    }
    check(
        "cold start from the pool, provided Rust bootstrap (lambda_runtime), under 3 ms".into(),
        crate::lambda::cold_p50(r, LambdaCold::ProvidedRust),
        Some(3000.0),
    );
    check(
        format!(
            "cold start from the pool, python, no slower than before the Lambda work \
             ({PYTHON_POOLED_BEFORE_US} us at p50 at commit 0054588)"
        ),
        r.cold_pool_p50(Runtime::Python),
        Some(PYTHON_POOLED_BEFORE_US),
    );
    Value::Array(out)
}

/// The pooled python cold start at p50 before /var/task, /opt and /tmp
/// were mounted at assignment: 1.62 ms in the full run of 2026-11-23 at
/// 27624f4, and 1.62 ms again in a full run of 2026-12-05 at 0054588 on
/// the machine README's current figures come from.
const PYTHON_POOLED_BEFORE_US: f64 = 1620.0;
