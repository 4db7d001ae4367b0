//! Scheduling end to end: pull queues and concurrency, throttling, the
//! adaptive pool, tenancy across redeploys, idle reaping, pre-triggers and
//! affinity routing, observed through `sprout stats` and what handlers
//! report (sandbox ids, module state). Handlers that must overlap
//! wait at a *gate*: a file the test creates in the version's code
//! directory once the counters show the state it wants to observe.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use sprout::client::{Client, InvokeOptions};
use sprout::protocol::{
    AffinityMode, DeploySpec, ErrorKind, FunctionStats, InvokeResponse, PoolStats,
};

fn fstats(client: &Client, name: &str) -> FunctionStats {
    let mut report = client.stats(Some(name)).expect("stats");
    assert_eq!(report.functions.len(), 1);
    report.functions.remove(0)
}

fn python_pool(client: &Client) -> PoolStats {
    client
        .stats(None)
        .expect("stats")
        .daemon
        .pool
        .into_iter()
        .find(|p| p.runtime == "python" && p.memory_mb == 128)
        .expect("a python pool of the default shape")
}

/// Poll `cond` until it holds; fail after 30 s with what it waited for.
fn wait_until(daemon: &Daemon, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
    let _ = daemon;
}

/// Let the handlers of `name` version `version` waiting at `gate` go.
fn open_gate(daemon: &Daemon, name: &str, version: u64, gate: &str) {
    let path: PathBuf = daemon
        .state
        .join("functions")
        .join(name)
        .join(version.to_string())
        .join("code")
        .join(gate);
    std::fs::write(&path, b"").unwrap_or_else(|e| panic!("open gate {}: {e}", path.display()));
}

/// The handler's JSON result; fails on an error.
fn keyed(client: &Client, name: &str, key: &str, event: &str) -> InvokeResponse {
    let options = InvokeOptions {
        affinity: Some(key.to_owned()),
        ..Default::default()
    };
    client
        .invoke_with(name, event.as_bytes(), &options)
        .expect("invoke")
}

fn burst_runs_on_exactly_concurrency_sandboxes(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    let info = client
        .deploy(&DeploySpec {
            concurrency: Some(8),
            timeout_secs: Some(60),
            ..python_spec("burst", "app.gate")
        })
        .unwrap();
    // 50 invocations from 5 connections, each shared by 10 threads.
    let conns: Vec<Arc<Client>> = (0..5).map(|_| Arc::new(daemon.client())).collect();
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let conn = Arc::clone(&conns[i % conns.len()]);
            thread::spawn(move || conn.invoke("burst", br#""go""#))
        })
        .collect();
    wait_until(&daemon, "8 busy sandboxes and 42 queued", || {
        let s = fstats(&client, "burst");
        s.sandboxes_busy == 8 && s.queue_depth == 42
    });
    let s = fstats(&client, "burst");
    assert_eq!((s.sandboxes_live, s.sandboxes_starting), (8, 0));
    open_gate(&daemon, "burst", info.version, "go");

    let responses: Vec<InvokeResponse> = calls
        .into_iter()
        .map(|c| c.join().unwrap().expect("invoke"))
        .collect();
    let instances: BTreeSet<String> = responses
        .iter()
        .map(|r| ok(r, &daemon)["instance"].as_str().unwrap().to_owned())
        .collect();
    let sandboxes: BTreeSet<u64> = responses.iter().map(|r| r.sandbox).collect();
    assert_eq!(sandboxes.len(), 8, "exactly the concurrency: {sandboxes:?}");
    assert_eq!(instances.len(), 8, "{instances:?}");
    assert_eq!(responses.iter().filter(|r| r.cold).count(), 8);

    let s = fstats(&client, "burst");
    assert_eq!(s.invocations, 50);
    // Every invocation waited until a sandbox was free: at least 42 at
    // once (50 when all came before the first sandbox was ready).
    assert!((42..=50).contains(&s.queue_peak), "{s:?}");
    assert_eq!(s.queue_depth, 0, "drained");
    assert_eq!((s.cold_starts, s.warm_hits), (8, 42));
    assert_eq!(s.cold_from_pool + s.cold_new, 8);
    assert_eq!((s.errors, s.throttles, s.timeouts), (0, 0, 0));
    assert_eq!((s.sandboxes_live, s.sandboxes_busy), (8, 0));
    assert_eq!(
        (s.queue_wait_us.count, s.run_us.count, s.init_us.count),
        (50, 50, 8)
    );
    assert!(s.queue_wait_us.p99 >= s.queue_wait_us.p50);
}

fn full_queue_throttles(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = Arc::new(daemon.client());
    let info = client
        .deploy(&DeploySpec {
            concurrency: Some(1),
            max_queue: Some(2),
            timeout_secs: Some(60),
            ..python_spec("narrow", "app.gate")
        })
        .unwrap();
    let call = |client: &Arc<Client>| {
        let client = Arc::clone(client);
        thread::spawn(move || client.invoke("narrow", br#""open""#))
    };
    let mut calls = vec![call(&client)];
    wait_until(&daemon, "the first invocation running", || {
        fstats(&client, "narrow").sandboxes_busy == 1
    });
    calls.push(call(&client));
    calls.push(call(&client));
    wait_until(&daemon, "two invocations queued", || {
        fstats(&client, "narrow").queue_depth == 2
    });
    let refused = client.invoke("narrow", br#""open""#);
    assert_eq!(error_kind(refused), Some(ErrorKind::Throttled));
    open_gate(&daemon, "narrow", info.version, "open");
    for c in calls {
        let r = c.join().unwrap().expect("invoke");
        ok(&r, &daemon);
    }
    let s = fstats(&client, "narrow");
    assert_eq!((s.invocations, s.throttles, s.errors), (3, 1, 0));
    assert_eq!((s.queue_peak, s.sandboxes_live), (2, 1));
}

fn pool_adapts_and_a_trickle_finds_the_pool(backend: &str) {
    let daemon = Daemon::start_with(backend, &["--pool-min", "0", "--pool-max", "3"]);
    let client = daemon.client();
    let pool = python_pool(&client);
    assert_eq!((pool.target, pool.idle, pool.min, pool.max), (0, 0, 0, 3));

    // The pool is empty: the first new function's sandbox is created for
    // it, and that miss raises the pool's target.
    deploy_python(&client, "new0", "app.echo");
    let first = client.invoke("new0", b"{}").unwrap();
    assert!(first.cold);
    let s = fstats(&client, "new0");
    assert_eq!((s.cold_new, s.cold_from_pool), (1, 0));
    let pool = python_pool(&client);
    assert_eq!(pool.misses, 1);
    assert!(pool.target >= 1, "{pool:?}");

    // A trickle of new functions: each finds a pooled sandbox.
    for i in 1..5 {
        wait_until(&daemon, "a pooled python sandbox", || {
            python_pool(&client).idle >= 1
        });
        let name = format!("new{i}");
        deploy_python(&client, &name, "app.echo");
        let r = client.invoke(&name, b"{}").unwrap();
        ok(&r, &daemon);
        assert!(r.cold, "a new function's first invocation is a cold start");
        let s = fstats(&client, &name);
        assert_eq!((s.cold_from_pool, s.cold_new), (1, 0), "{name}: {s:?}");
    }
    let pool = python_pool(&client);
    assert_eq!((pool.taken, pool.misses), (4, 1));
}

fn redeploy_retires_the_old_version_after_its_work(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = Arc::new(daemon.client());
    let v1 = client
        .deploy(&DeploySpec {
            timeout_secs: Some(60),
            ..python_spec("ver", "app.gate")
        })
        .unwrap();
    let inflight = {
        let client = Arc::clone(&client);
        thread::spawn(move || client.invoke("ver", br#""v1""#))
    };
    wait_until(&daemon, "version 1 running", || {
        fstats(&client, "ver").sandboxes_busy == 1
    });
    let v2 = deploy_python(&client, "ver", "app.whoami");
    assert_eq!(v2.version, v1.version + 1);
    let new = client.invoke("ver", b"{}").unwrap();
    let new_instance = ok(&new, &daemon)["instance"].clone();
    let s = fstats(&client, "ver");
    assert_eq!((s.version, s.sandboxes_live), (v2.version, 2), "{s:?}");

    open_gate(&daemon, "ver", v1.version, "v1");
    let old = inflight.join().unwrap().expect("invoke");
    let old_instance = ok(&old, &daemon)["instance"].clone();
    assert_ne!(old.sandbox, new.sandbox, "a sandbox serves one version");
    assert_ne!(old_instance, new_instance);
    let old_cgroup = format!("sandbox-{}", old.sandbox);
    wait_until(&daemon, "version 1's sandbox gone", || {
        fstats(&client, "ver").sandboxes_live == 1
    });
    wait_until(&daemon, "version 1's cgroup removed", || {
        !daemon
            .cgroup_dirs()
            .iter()
            .any(|d| d.ends_with(&old_cgroup))
    });
    for _ in 0..3 {
        let r = client.invoke("ver", b"{}").unwrap();
        assert_eq!(r.sandbox, new.sandbox);
    }
}

fn idle_sandboxes_are_reaped_busy_ones_never(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = Arc::new(daemon.client());
    let info = client
        .deploy(&DeploySpec {
            idle_timeout_secs: Some(1),
            timeout_secs: Some(30),
            ..python_spec("brief", "app.gate")
        })
        .unwrap();
    let call = {
        let client = Arc::clone(&client);
        thread::spawn(move || client.invoke("brief", br#""g""#))
    };
    wait_until(&daemon, "the sandbox busy", || {
        fstats(&client, "brief").sandboxes_busy == 1
    });
    let cgroups_while_busy = daemon.cgroup_dirs();
    // Busy for longer than the idle timeout (and several ticks): never
    // reaped, so the invocation ends well.
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(fstats(&client, "brief").reaped, 0);
    open_gate(&daemon, "brief", info.version, "g");
    let r = call.join().unwrap().expect("invoke");
    ok(&r, &daemon);
    let cgroup = format!("sandbox-{}", r.sandbox);
    assert!(
        cgroups_while_busy.iter().any(|d| d.ends_with(&cgroup)),
        "the sandbox had a cgroup while it lived: {cgroups_while_busy:?}"
    );

    // Idle now: destroyed after its idle timeout, process and cgroup.
    wait_until(&daemon, "the idle sandbox reaped", || {
        let s = fstats(&client, "brief");
        s.sandboxes_live == 0 && s.reaped == 1
    });
    // Its cgroup can only be removed once no process is left in it.
    wait_until(&daemon, "its cgroup removed", || {
        !daemon.cgroup_dirs().iter().any(|d| d.ends_with(&cgroup))
    });
    let s = fstats(&client, "brief");
    assert_eq!((s.errors, s.invocations), (0, 1));
}

fn pretrigger_prepares_warm_sandboxes(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    let info = client
        .deploy(&DeploySpec {
            concurrency: Some(4),
            idle_timeout_secs: Some(1),
            timeout_secs: Some(60),
            ..python_spec("pre", "app.gate")
        })
        .unwrap();
    let out = daemon.cli(&["pretrigger", "pre", "--count", "10", "--ttl", "60"], None);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("preparing 4 sandboxes"),
        "bounded by concurrency: {text}"
    );
    wait_until(&daemon, "4 prepared sandboxes", || {
        let out = daemon.cli(&["stats", "pre", "--json"], None);
        json(&out.stdout)["functions"][0]["prepared"] == 4
    });
    let s = fstats(&client, "pre");
    assert_eq!((s.sandboxes_idle, s.invocations), (4, 0));

    let conns: Vec<Arc<Client>> = (0..2).map(|_| Arc::new(daemon.client())).collect();
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let conn = Arc::clone(&conns[i % 2]);
            thread::spawn(move || conn.invoke("pre", br#""p""#))
        })
        .collect();
    wait_until(&daemon, "4 busy", || {
        fstats(&client, "pre").sandboxes_busy == 4
    });
    open_gate(&daemon, "pre", info.version, "p");
    let responses: Vec<InvokeResponse> = calls
        .into_iter()
        .map(|c| c.join().unwrap().expect("invoke"))
        .collect();
    for r in &responses {
        ok(r, &daemon);
        assert!(!r.cold, "a prepared sandbox is warm");
    }
    let sandboxes: BTreeSet<u64> = responses.iter().map(|r| r.sandbox).collect();
    assert_eq!(sandboxes.len(), 4);
    let s = fstats(&client, "pre");
    assert_eq!((s.cold_starts, s.warm_hits), (0, 4));

    // Pinned by the pre-trigger: the 1 s idle timeout does not apply.
    thread::sleep(Duration::from_millis(2500));
    let s = fstats(&client, "pre");
    assert_eq!((s.sandboxes_live, s.reaped, s.prepared), (4, 0, 4));

    let refused = client.pretrigger("nope", 1, None);
    assert_eq!(refused.unwrap_err().error_kind(), Some(ErrorKind::NotFound));
}

fn affinity_keeps_state_per_key(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = Arc::new(daemon.client());
    let info = client
        .deploy(&DeploySpec {
            concurrency: Some(4),
            timeout_secs: Some(60),
            ..python_spec("aff", "app.keyed")
        })
        .unwrap();
    // Interleaved keys: each key's count lives in its sandbox's module.
    let mut instances: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut seen = Vec::new();
    for key in ["a", "b", "a", "b", "a"] {
        let r = keyed(&client, "aff", key, "{}");
        let v = ok(&r, &daemon);
        assert_eq!(v["key"], key, "the handler sees its key");
        instances
            .entry(key.into())
            .or_default()
            .insert(v["instance"].as_str().unwrap().to_owned());
        seen.push((key, v["count"].as_i64().unwrap(), r.affinity_hit));
    }
    assert_eq!(
        seen,
        [
            ("a", 1, false),
            ("b", 1, false),
            ("a", 2, true),
            ("b", 2, true),
            ("a", 3, true)
        ]
    );
    assert!(instances.values().all(|p| p.len() == 1), "{instances:?}");
    let instance_a = Value::from(instances["a"].first().unwrap().as_str());

    let out = daemon.cli(&["invoke", "aff", "{}", "--affinity", "b", "--json"], None);
    assert!(out.status.success(), "{out:?}");
    let v = json(&out.stdout);
    assert_eq!(
        (v["affinity_hit"].clone(), v["result"]["count"].clone()),
        (true.into(), 3.into())
    );

    // Key a's sandbox is busy: the next a waits for it, although another
    // sandbox is idle and serves an invocation without a key meanwhile.
    let first = {
        let client = Arc::clone(&client);
        thread::spawn(move || keyed(&client, "aff", "a", r#"{"gate": "ga"}"#))
    };
    wait_until(&daemon, "key a's sandbox busy", || {
        fstats(&client, "aff").sandboxes_busy == 1
    });
    let second = {
        let client = Arc::clone(&client);
        thread::spawn(move || keyed(&client, "aff", "a", "{}"))
    };
    wait_until(&daemon, "the second a waiting", || {
        fstats(&client, "aff").queue_depth == 1
    });
    let keyless = client.invoke("aff", b"{}").unwrap();
    assert_ne!(ok(&keyless, &daemon)["instance"], instance_a);
    let s = fstats(&client, "aff");
    assert_eq!(s.queue_depth, 1, "still waiting for its own sandbox");
    assert!(s.sandboxes_idle >= 1);
    open_gate(&daemon, "aff", info.version, "ga");
    for (call, count) in [(first, 4), (second, 5)] {
        let r = call.join().unwrap();
        let v = ok(&r, &daemon);
        assert_eq!(
            (v["instance"].clone(), v["count"].as_i64()),
            (instance_a.clone(), Some(count))
        );
        assert!(r.affinity_hit);
    }

    // Its sandbox gone, any sandbox serves key a and becomes its own.
    let crash = keyed(&client, "aff", "a", r#"{"exit": true}"#);
    assert_eq!(crash.error.map(|e| e.kind), Some(ErrorKind::RuntimeCrash));
    let r = keyed(&client, "aff", "a", "{}");
    let v = ok(&r, &daemon);
    assert_eq!(v["count"], 1, "fresh module state");
    assert!(!r.affinity_hit);
    assert_ne!(v["instance"], instance_a);
    let again = keyed(&client, "aff", "a", "{}");
    assert_eq!(ok(&again, &daemon)["instance"], v["instance"]);
    assert!(again.affinity_hit);
    let s = fstats(&client, "aff");
    assert!(s.affinity_keys >= 1, "{s:?}");
    assert_eq!((s.affinity_hits, s.affinity_misses), (8, 3), "{s:?}");
}

fn strict_affinity_dedicates_sandboxes(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    client
        .deploy(&DeploySpec {
            concurrency: Some(2),
            affinity_mode: Some(AffinityMode::Strict),
            ..python_spec("iso", "app.keyed")
        })
        .unwrap();
    assert_eq!(
        error_kind(client.invoke("iso", b"{}")),
        Some(ErrorKind::BadRequest),
        "a strict function needs a key"
    );
    // Two keys fill the concurrency; a third evicts the least recently
    // used; the evicted key comes back to a fresh sandbox.
    let mut keys_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut counts = Vec::new();
    for key in ["a", "b", "a", "b", "c", "a", "c"] {
        let r = keyed(&client, "iso", key, "{}");
        let v = ok(&r, &daemon);
        keys_of
            .entry(v["instance"].as_str().unwrap().to_owned())
            .or_default()
            .insert(key.to_owned());
        counts.push(v["count"].as_i64().unwrap());
    }
    assert_eq!(counts, [1, 1, 2, 2, 1, 1, 2]);
    assert!(
        keys_of.values().all(|k| k.len() == 1),
        "a sandbox served one key only: {keys_of:?}"
    );
    assert_eq!(keys_of.len(), 4, "a, b, c, and a again");
    let s = fstats(&client, "iso");
    assert!(s.sandboxes_live <= 2, "{s:?}");
    assert_eq!(s.affinity_keys, 2);
}

fn deploy_options_are_listed_and_kept(backend: &str) {
    let mut daemon = Daemon::start(backend);
    let code = fixtures().join("pyfuncs");
    let code = code.to_str().unwrap();
    let out = daemon.cli(
        &[
            "deploy",
            "opts",
            "--runtime",
            "python",
            "--handler",
            "app.echo",
            "--code",
            code,
            "--concurrency",
            "3",
            "--queue",
            "7",
            "--idle-timeout",
            "9",
            "--affinity-mode",
            "strict",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let bad = daemon.cli(
        &[
            "deploy",
            "bad",
            "--runtime",
            "python",
            "--handler",
            "app.echo",
            "--code",
            code,
            "--concurrency",
            "0",
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("concurrency 0"));
    let listed = |daemon: &Daemon| {
        let out = daemon.cli(&["list", "--json"], None);
        let v = json(&out.stdout);
        (
            v[0]["concurrency"].clone(),
            v[0]["max_queue"].clone(),
            v[0]["idle_timeout_secs"].clone(),
            v[0]["affinity_mode"].clone(),
        )
    };
    let want = (3.into(), 7.into(), 9.into(), "strict".into());
    assert_eq!(listed(&daemon), want);
    let table = daemon.cli(&["list"], None);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("strict") && table.contains("9 s"), "{table}");
    daemon.stop();
    daemon.spawn(backend, &[]);
    assert_eq!(listed(&daemon), want, "kept across a restart");
}

/// Lambda's `AWS_LAMBDA_INITIALIZATION_TYPE`: a sandbox a pre-trigger
/// started says `provisioned-concurrency`, one started for a waiting
/// invocation `on-demand`.
fn pretriggered_sandboxes_are_provisioned_concurrency(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    let keys = br#"{"keys": ["AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_FUNCTION_NAME"]}"#;
    for name in ["provisioned", "ondemand"] {
        client
            .deploy(&python_spec(name, "app.environ"))
            .expect("deploy");
    }
    client.pretrigger("provisioned", 1, Some(60)).unwrap();
    wait_until(&daemon, "1 prepared sandbox", || {
        fstats(&client, "provisioned").prepared == 1
    });
    let warm = client.invoke("provisioned", keys).unwrap();
    assert!(!warm.cold, "served by the prepared sandbox");
    assert_eq!(
        ok(&warm, &daemon),
        serde_json::json!({
            "AWS_LAMBDA_INITIALIZATION_TYPE": "provisioned-concurrency",
            "AWS_LAMBDA_FUNCTION_NAME": "provisioned",
        })
    );
    let cold = client.invoke("ondemand", keys).unwrap();
    assert!(cold.cold);
    assert_eq!(
        ok(&cold, &daemon),
        serde_json::json!({
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_FUNCTION_NAME": "ondemand",
        })
    );
}

on_both_backends!(
    pretriggered_sandboxes_are_provisioned_concurrency,
    burst_runs_on_exactly_concurrency_sandboxes,
    full_queue_throttles,
    pool_adapts_and_a_trickle_finds_the_pool,
    redeploy_retires_the_old_version_after_its_work,
    idle_sandboxes_are_reaped_busy_ones_never,
    pretrigger_prepares_warm_sandboxes,
    affinity_keeps_state_per_key,
    strict_affinity_dedicates_sandboxes,
    deploy_options_are_listed_and_kept,
);
