//! Calls between functions end to end: nested invocations through the
//! runtime's ring, the trace context the daemon injects into them, and the
//! limits that keep call trees from running away or deadlocking.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use sprout::client::{Client, InvokeOptions};
use sprout::protocol::{DeploySpec, ErrorKind};

fn calls_spec(name: &str, handler: &str) -> DeploySpec {
    DeploySpec {
        code: fixtures().join("calls"),
        ..python_spec(name, handler)
    }
}

fn deploy(client: &Client, name: &str, handler: &str) {
    client.deploy(&calls_spec(name, handler)).expect("deploy");
}

fn invoke(client: &Client, name: &str, event: Value) -> Value {
    let response = client
        .invoke(name, event.to_string().as_bytes())
        .expect("invoke");
    assert!(response.error.is_none(), "{name}: {:?}", response.error);
    json(&response.result)
}

fn three_level_tree(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    for name in ["ta", "tb", "tc"] {
        deploy(&client, name, "app.chain");
    }
    let response = client
        .invoke("ta", json!({"next": ["tb", "tc"]}).to_string().as_bytes())
        .expect("invoke");
    assert!(response.error.is_none(), "{:?}", response.error);
    let a = json(&response.result);
    let b = &a["child"];
    let c = &b["child"];
    // The composed result came back through every level.
    assert_eq!(
        (&a["function"], &b["function"], &c["function"]),
        (&json!("ta"), &json!("tb"), &json!("tc"))
    );
    assert_eq!(a["request_id"], json!(response.invocation_id.to_string()));
    // One trace, each level the child of the one above, whatever the
    // payload claimed (it carried a forged parent and trace id).
    let trace = a["trace_id"].as_str().expect("a trace id");
    assert_eq!(trace.len(), 32);
    assert_ne!(trace, "f".repeat(32));
    assert_eq!(
        (&b["trace_id"], &c["trace_id"]),
        (&a["trace_id"], &a["trace_id"])
    );
    assert_eq!(a["parent_id"], Value::Null);
    assert_eq!(b["parent_id"], a["request_id"]);
    assert_eq!(c["parent_id"], b["request_id"]);
    assert_eq!(
        (&a["depth"], &b["depth"], &c["depth"]),
        (&json!(0), &json!(1), &json!(2))
    );
    // The recorded tree, asked for by its leaf's id: the same links, every
    // level a cold start the first time...
    let leaf: u64 = c["request_id"].as_str().unwrap().parse().unwrap();
    let report = client.trace(leaf).expect("trace");
    assert_eq!(report.trace_id, trace);
    let spans: Vec<_> = report
        .spans
        .iter()
        .map(|s| (s.function.as_str(), s.depth, s.parent_id, s.cold, s.error))
        .collect();
    let id = |v: &Value| v["request_id"].as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(
        spans,
        [
            ("ta", 0, None, true, None),
            ("tb", 1, Some(id(&a)), true, None),
            ("tc", 2, Some(id(b)), true, None),
        ]
    );
    // ...and warm the second time, shown by the CLI as an indented tree.
    let again = client
        .invoke("ta", json!({"next": ["tb", "tc"]}).to_string().as_bytes())
        .expect("invoke");
    let socket = daemon.socket.to_str().unwrap();
    let out = daemon.cli(
        &[
            "trace",
            &again.invocation_id.to_string(),
            "--socket",
            socket,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("(3 invocations)"), "{text}");
    let root = format!("ta #{} v1  warm", again.invocation_id);
    assert!(lines[1].starts_with(&root), "{text}");
    assert!(
        lines[2].starts_with("  tb #") && lines[2].contains("warm"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("    tc #") && lines[3].contains("warm"),
        "{text}"
    );
    // Chrome trace events: one per invocation plus its phases.
    let file = daemon.dir.path().join("trace.json");
    let id_arg = again.invocation_id.to_string();
    let file_arg = file.to_str().unwrap();
    let out = daemon.cli(
        &["trace", &id_arg, "--chrome", file_arg, "--socket", socket],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = json(&std::fs::read(&file).unwrap());
    let invocations = events["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cat"] == "invocation")
        .count();
    assert_eq!(invocations, 3);

    // The profile of the middle function: two runs, called by ta twice,
    // calling tc twice.
    let profile = client.profile("tb").expect("profile");
    assert_eq!(
        (profile.count, profile.errors, profile.cold_starts),
        (2, 0, 1)
    );
    let edges = |e: &[sprout::protocol::CallEdge]| -> Vec<(String, u64)> {
        e.iter().map(|c| (c.function.clone(), c.calls)).collect()
    };
    assert_eq!(edges(&profile.callers), [("ta".to_string(), 2)]);
    assert_eq!(edges(&profile.callees), [("tc".to_string(), 2)]);
    let share = profile.callees[0].wait_share;
    assert!(share > 0.0 && share <= 1.0, "{share}");
    assert!(client.profile("tc").expect("profile").callees.is_empty());
}

fn depth_limit_stops_recursion(backend: &str) {
    let daemon = Daemon::start_with(backend, &["--max-call-depth", "3"]);
    let client = daemon.client();
    deploy(&client, "loop", "app.recurse");
    let response = client.invoke("loop", b"{}").expect("invoke");
    let error = response.error.expect("recursion must fail");
    // The refusal at depth 4 surfaced as an exception in the depth-3
    // handler, which let it propagate up through every level.
    assert_eq!(error.kind, ErrorKind::FunctionError);
    assert!(
        error
            .message
            .contains("call depth 4 is over the limit of 3"),
        "{error}"
    );
    // Depths 0 to 3 ran: four invocations, no more.
    let stats = client.stats(Some("loop")).expect("stats");
    assert_eq!(stats.functions[0].invocations, 4);
}

fn unknown_callee_is_not_found(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy(&client, "caller", "app.call");
    let out = invoke(&client, "caller", json!({"target": "nobody"}));
    assert_eq!(out["kind"], json!("NotFound"), "{out}");
    assert!(out["message"]
        .as_str()
        .unwrap()
        .contains("no function named nobody"));
    // A callee that raises reports its own error type to the caller.
    deploy(&client, "thrower", "app.fail");
    let out = invoke(&client, "caller", json!({"target": "thrower"}));
    assert_eq!(
        (&out["kind"], &out["error_type"]),
        (&json!("FunctionError"), &json!("ValueError")),
        "{out}"
    );
    assert!(out["message"].as_str().unwrap().contains("callee says no"));
}

fn fire_and_forget_completes(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy(&client, "starter", "app.fire");
    deploy(&client, "napper", "app.nap");
    let out = invoke(
        &client,
        "starter",
        json!({"target": "napper", "event": {"ms": 300}}),
    );
    let callee = out["callee"].as_u64().expect("the callee's invocation id");
    let caller: u64 = out["request_id"].as_str().unwrap().parse().unwrap();
    // The caller answered first; the callee finishes on its own and joins
    // the tree.
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let report = client.trace(caller).expect("trace");
        if report.spans.len() == 2 {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "the detached call never finished: {report:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let span = &report.spans[1];
    assert_eq!(
        (
            span.invocation_id,
            span.function.as_str(),
            span.parent_id,
            span.depth
        ),
        (callee, "napper", Some(caller), 1)
    );
    assert!(span.detached && span.error.is_none(), "{span:?}");
}

fn nested_call_on_exhausted_concurrency_is_throttled(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    // One sandbox at most, held by the caller itself: its call to itself
    // can never get one.
    let spec = DeploySpec {
        concurrency: Some(1),
        timeout_secs: Some(2),
        ..calls_spec("selfish", "app.call")
    };
    client.deploy(&spec).expect("deploy");
    let out = invoke(
        &client,
        "selfish",
        json!({"target": "selfish", "event": {}}),
    );
    assert_eq!(out["kind"], json!("Throttled"), "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .contains("caller's deadline"),
        "{out}"
    );
}

fn client_traceparent_is_joined(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    deploy(&client, "ja", "app.chain");
    deploy(&client, "jb", "app.chain");
    let options = InvokeOptions {
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        ..Default::default()
    };
    let payload = json!({"next": ["jb"]}).to_string();
    let response = client
        .invoke_with("ja", payload.as_bytes(), &options)
        .expect("invoke");
    let a = json(&response.result);
    assert_eq!(a["trace_id"], json!("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(a["parent_id"], json!("00f067aa0ba902b7"));
    assert_eq!(a["child"]["trace_id"], a["trace_id"]);
    assert_eq!(a["child"]["parent_id"], a["request_id"]);
    // A malformed traceparent is refused before anything runs.
    let bad = InvokeOptions {
        traceparent: Some("00-nonsense".into()),
        ..Default::default()
    };
    let refused = client.invoke_with("ja", b"{}", &bad);
    assert_eq!(error_kind(refused), Some(ErrorKind::BadRequest));
}

/// The OTLP receiver of tests/fixtures: its port, and its stdout (one JSON
/// line per span it decoded).
struct Receiver {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    port: u16,
}

impl Receiver {
    fn start() -> Receiver {
        use std::io::BufRead;
        let mut child = std::process::Command::new("/usr/bin/python3")
            .arg(fixtures().join("otlp_receiver.py"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the OTLP receiver");
        let (send, lines) = std::sync::mpsc::channel();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let port = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the receiver printed no port (is opentelemetry-proto installed? .ci/run installs it)")
            .parse()
            .expect("a port");
        Receiver { child, lines, port }
    }

    fn spans(&self, n: usize) -> Vec<Value> {
        (0..n)
            .map(|_| {
                let line = self
                    .lines
                    .recv_timeout(Duration::from_secs(30))
                    .expect("the collector got too few spans");
                serde_json::from_str(&line).unwrap()
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn otlp_export_of_a_call_tree(backend: &str) {
    let receiver = Receiver::start();
    let endpoint = format!("http://127.0.0.1:{}/v1/traces", receiver.port);
    let daemon = Daemon::start_with(backend, &["--otlp-endpoint", &endpoint]);
    let client = daemon.client();
    for name in ["oa", "ob", "oc"] {
        deploy(&client, name, "app.chain");
    }
    let a = invoke(&client, "oa", json!({"next": ["ob", "oc"]}));
    let mut spans = receiver.spans(3);
    spans.sort_by_key(|s| s["attributes"]["sprout.depth"].as_i64());
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["oa", "ob", "oc"]);
    let id = |v: &Value| {
        format!(
            "{:016x}",
            v["request_id"].as_str().unwrap().parse::<u64>().unwrap()
        )
    };
    assert_eq!(spans[0]["span_id"], json!(id(&a)));
    assert_eq!(spans[1]["span_id"], json!(id(&a["child"])));
    for span in &spans {
        assert_eq!(span["trace_id"], a["trace_id"]);
        assert_eq!(
            (span["service"].as_str(), span["path"].as_str()),
            (Some("sprout"), Some("/v1/traces"))
        );
        assert_eq!(span["content_type"], json!("application/x-protobuf"));
        assert_eq!(span["status"], json!(1), "status OK: {span}");
        assert_eq!(span["attributes"]["sprout.cold"], json!(true));
    }
    // Parent links, and each child's interval inside its parent's.
    assert_eq!(spans[0]["parent_span_id"], json!(""));
    for pair in spans.windows(2) {
        let (parent, child) = (&pair[0], &pair[1]);
        assert_eq!(child["parent_span_id"], parent["span_id"]);
        let (ps, pe) = (
            parent["start"].as_u64().unwrap(),
            parent["end"].as_u64().unwrap(),
        );
        let (cs, ce) = (
            child["start"].as_u64().unwrap(),
            child["end"].as_u64().unwrap(),
        );
        assert!(
            ps <= cs && cs < ce && ce <= pe,
            "{parent} does not contain {child}"
        );
    }
    // The exporter counts once the collector answered.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let daemon_stats = client.stats(None).expect("stats").daemon;
        if daemon_stats.otlp_exported == 3 {
            assert_eq!(daemon_stats.otlp_dropped, 0);
            break;
        }
        assert!(Instant::now() < deadline, "{daemon_stats:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn otlp_collector_down_is_counted(backend: &str) {
    // A port nobody listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}/v1/traces");
    let daemon = Daemon::start_with(backend, &["--otlp-endpoint", &endpoint]);
    let client = daemon.client();
    deploy(&client, "lonely", "app.nap");
    invoke(&client, "lonely", json!({}));
    // The invocation was answered regardless; its span is counted as
    // dropped once the exporter gave up on it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let daemon_stats = client.stats(None).expect("stats").daemon;
        if daemon_stats.otlp_dropped == 1 {
            assert_eq!(daemon_stats.otlp_exported, 0);
            break;
        }
        assert!(Instant::now() < deadline, "{daemon_stats:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The cold starts in the call tree of a chain `names[0]` → `[1]` → `[2]`
/// invoked once all three were reaped.
fn cold_starts_after_reaping(client: &Client, names: [&str; 3], prewarm: bool) -> usize {
    for name in names {
        let spec = DeploySpec {
            idle_timeout_secs: Some(1),
            prewarm_callees: Some(prewarm),
            ..calls_spec(name, "app.chain")
        };
        let info = client.deploy(&spec).expect("deploy");
        assert_eq!(
            info.prewarm_callees, prewarm,
            "the option shows in FunctionInfo"
        );
    }
    // The caller works a second before it calls: room for pre-warmed
    // callees to finish starting.
    let event = json!({"next": [names[1], names[2]], "work_ms": 1000}).to_string();
    let cold = |client: &Client| {
        let response = client.invoke(names[0], event.as_bytes()).expect("invoke");
        assert!(response.error.is_none(), "{:?}", response.error);
        let report = client.trace(response.invocation_id).expect("trace");
        assert_eq!(report.spans.len(), 3);
        report.spans.iter().filter(|s| s.cold).count()
    };
    // The first run has no history to learn from: all cold.
    assert_eq!(cold(client), 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    while names
        .iter()
        .any(|n| client.stats(Some(n)).expect("stats").functions[0].sandboxes_live > 0)
    {
        assert!(Instant::now() < deadline, "the sandboxes were never reaped");
        std::thread::sleep(Duration::from_millis(50));
    }
    cold(client)
}

fn prewarm_callees_takes_cold_starts_off_the_critical_path(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    assert_eq!(
        cold_starts_after_reaping(&client, ["xa", "xb", "xc"], false),
        3
    );
    assert_eq!(
        cold_starts_after_reaping(&client, ["wa", "wb", "wc"], true),
        1
    );
    for (name, avoided) in [("wa", 0), ("wb", 1), ("wc", 1), ("xb", 0)] {
        let stats = client.stats(Some(name)).expect("stats");
        assert_eq!(stats.functions[0].cold_starts_avoided, avoided, "{name}");
    }
}

/// A native function (examples/hello-native) calling another one
/// synchronously and a third fire-and-forget through the native runtime's
/// ring, in real sandboxes.
fn native_nested_calls(backend: &str) {
    let daemon = Daemon::start(backend);
    let client = daemon.client();
    for name in ["na", "nb", "nc"] {
        client.deploy(&native_spec(name)).expect("deploy");
    }
    let event = json!({
        "name": "a",
        "call": {"function": "nb", "event": {"name": "b"}},
        "start": {"function": "nc", "event": {"name": "c"}},
    });
    let response = client
        .invoke("na", event.to_string().as_bytes())
        .expect("invoke");
    assert!(response.error.is_none(), "{:?}", response.error);
    let a = json(&response.result);
    let b = &a["called"];
    // The callee's result came back through the caller.
    assert_eq!(
        (&a["message"], &b["message"], &b["function"]),
        (&json!("Hello, a!"), &json!("Hello, b!"), &json!("nb"))
    );
    // The callee ran in the caller's trace, one level down, its parent the
    // caller's invocation.
    let trace = a["trace_id"].as_str().expect("a trace id");
    assert_eq!(trace.len(), 32);
    assert_eq!(b["trace_id"], a["trace_id"]);
    assert_eq!((&a["parent_id"], &a["depth"]), (&Value::Null, &json!(0)));
    assert_eq!(
        (&b["parent_id"], &b["depth"]),
        (&a["request_id"], &json!(1))
    );
    let caller = response.invocation_id;
    assert_eq!(a["request_id"], json!(caller.to_string()));
    let called: u64 = b["request_id"].as_str().unwrap().parse().unwrap();
    let started = a["started"].as_u64().expect("the started callee's id");
    // The recorded tree, once the detached callee finished on its own.
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let report = client.trace(caller).expect("trace");
        if report.spans.len() == 3 {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "the tree never completed: {report:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(report.trace_id, trace);
    let spans: Vec<_> = report
        .spans
        .iter()
        .map(|s| {
            (
                s.invocation_id,
                s.function.as_str(),
                s.parent_id,
                s.depth,
                s.detached,
                s.error,
            )
        })
        .collect();
    assert_eq!(
        spans,
        [
            (caller, "na", None, 0, false, None),
            (called, "nb", Some(caller), 1, false, None),
            (started, "nc", Some(caller), 1, true, None),
        ]
    );
    assert!(report.spans.iter().all(|s| s.trace_id == trace));
    // A call the daemon refuses surfaces in the caller as an error naming
    // the refusal.
    let response = client
        .invoke(
            "na",
            json!({"call": {"function": "nobody"}})
                .to_string()
                .as_bytes(),
        )
        .expect("invoke");
    let error = response.error.expect("calling nobody must fail");
    assert_eq!(error.kind, ErrorKind::FunctionError);
    assert!(
        error.message.contains("NotFound") && error.message.contains("no function named nobody"),
        "{error}"
    );
}

on_both_backends!(
    three_level_tree,
    native_nested_calls,
    otlp_export_of_a_call_tree,
    otlp_collector_down_is_counted,
    prewarm_callees_takes_cold_starts_off_the_critical_path,
    client_traceparent_is_joined,
    depth_limit_stops_recursion,
    unknown_callee_is_not_found,
    fire_and_forget_completes,
    nested_call_on_exhausted_concurrency_is_throttled,
);
