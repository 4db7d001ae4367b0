//! The Python runtime (runtimes/python/bootstrap.py) driven for real: a
//! `/usr/bin/python3 -I` child with its ring at fds 3-5 and control socket
//! at 6, as a sandbox starts it (minus the confinement).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use serde_json::{json, Value};

use super::harness::RuntimeProcess;
use super::*;

const PYTHON: &str = "/usr/bin/python3";
const WAIT: Duration = Duration::from_secs(20);

const APP: &str = r#"
import os

def ok(event, context):
    return {
        "event": event,
        "request_id": context.aws_request_id,
        "same_id": context.request_id == context.aws_request_id,
        "function": context.function_name,
        "version": context.function_version,
        "memory": context.memory_limit_in_mb,
        "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 60000,
        "env": os.environ.get("GREETING"),
    }

def boom(event, context):
    raise ValueError("bad input: " + str(event))

def unmarshalable(event, context):
    return {"set": {1, 2}}

def as_json_sees_it(event, context):
    import json
    return {"event": event, "dumped": json.dumps(event)}
"#;

fn bootstrap() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runtimes/python/bootstrap.py")
}

fn code_dir(dir: &Path) -> OwnedFd {
    open(
        dir,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap()
}

fn assignment(handler: &str) -> Assignment {
    Assignment {
        function: "greeter".into(),
        version: 4,
        handler: handler.into(),
        env: BTreeMap::from([("GREETING".into(), "hi".into())]),
        memory_mb: 128,
        timeout_ms: 30_000,
    }
}

/// A python runtime that has said READY and been assigned `handler` from a
/// code dir holding `app.py` = [`APP`].
fn start(handler: &str, code: &Path) -> RuntimeProcess {
    let mut cmd = Command::new(PYTHON);
    cmd.arg("-I")
        .arg(bootstrap())
        .env_clear()
        .env("SPROUT_RUNTIME", "python");
    let mut rt = RuntimeProcess::spawn(cmd, 1 << 20).unwrap();
    assert_eq!(rt.wait_message(WAIT).unwrap(), RuntimeMessage::Ready);
    let dir = code_dir(code);
    rt.assign(&assignment(handler), dir.as_fd()).unwrap();
    rt
}

fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.py"), APP).unwrap();
    dir
}

fn result_json(message: RuntimeMessage, id: u64) -> Value {
    match message {
        RuntimeMessage::Result { id: got, body } => {
            assert_eq!(got, id);
            serde_json::from_slice(&body).unwrap()
        }
        other => panic!("expected a result, got {other:?}"),
    }
}

fn error_of(message: RuntimeMessage, id: u64) -> (String, String, Option<String>) {
    match message {
        RuntimeMessage::Error { id: got, body } => {
            assert_eq!(got, id);
            parse_function_error(&body)
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn python_runs_a_handler_with_event_and_context() {
    let code = app_dir();
    let mut rt = start("app.ok", code.path());
    assert_eq!(rt.wait_message(WAIT).unwrap(), RuntimeMessage::InitOk);

    let out = result_json(rt.invoke(41, br#"{"name": "Ada"}"#, WAIT).unwrap(), 41);
    assert_eq!(
        out,
        json!({
            "event": {"name": "Ada"},
            "request_id": "41",
            "same_id": true,
            "function": "greeter",
            "version": "4",
            "memory": "128",
            "remaining_ok": true,
            "env": "hi",
        })
    );
    // Empty payload is a None event; the same process serves on.
    let out = result_json(rt.invoke(42, b"", WAIT).unwrap(), 42);
    assert_eq!(out["event"], Value::Null);
    assert_eq!(out["request_id"], "42");
    // Many warm invocations in a row, with payloads that wrap the ring.
    let big = format!(r#"{{"blob": "{}"}}"#, "x".repeat(300_000));
    for id in 100..120u64 {
        let out = result_json(rt.invoke(id, big.as_bytes(), WAIT).unwrap(), id);
        assert_eq!(out["event"]["blob"].as_str().unwrap().len(), 300_000);
    }
}

#[test]
fn python_reports_a_raising_handler_and_carries_on() {
    let code = app_dir();
    let mut rt = start("app.boom", code.path());
    assert_eq!(rt.wait_message(WAIT).unwrap(), RuntimeMessage::InitOk);
    let (kind, message, stack) = error_of(rt.invoke(1, b"7", WAIT).unwrap(), 1);
    assert_eq!(kind, "ValueError");
    assert_eq!(message, "bad input: 7");
    let stack = stack.expect("a stack trace");
    assert!(
        stack.contains("app.py") && stack.contains("in boom"),
        "{stack}"
    );
    assert!(
        !stack.contains("bootstrap.py"),
        "runtime frames leak: {stack}"
    );
    // Not JSON: an unmarshal error, and the runtime is still alive.
    let (kind, _, _) = error_of(rt.invoke(2, b"{nope", WAIT).unwrap(), 2);
    assert_eq!(kind, "Runtime.UnmarshalError");
    let (kind, _, _) = error_of(rt.invoke(3, b"null", WAIT).unwrap(), 3);
    assert_eq!(kind, "ValueError");
}

/// The runtime decodes events and encodes results with its own codec on
/// `_json` (it does not import `json`): both must agree with `json`.
#[test]
fn python_runtime_json_agrees_with_the_json_module() {
    let code = app_dir();
    let mut rt = start("app.as_json_sees_it", code.path());
    assert_eq!(rt.wait_message(WAIT).unwrap(), RuntimeMessage::InitOk);
    let events: [&[u8]; 5] = [
        br#"{"a": [1, -2, 3.5, 1e300, 123456789012345678901234567890], "b": {"c": null}}"#,
        "  {\"unicode\": \"é\u{2028}ü ∑ \\\" \\\\ \\n\\u0001\"}\n".as_bytes(),
        b"[true, false, null, \"\", [], {}]",
        b"\"just a string\"",
        b"-0.0",
    ];
    for (id, event) in (1..).zip(events) {
        let RuntimeMessage::Result { id: got, body } = rt.invoke(id, event, WAIT).unwrap() else {
            panic!("no result for {}", String::from_utf8_lossy(event));
        };
        assert_eq!(got, id);
        let out: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&body));
        });
        let dumped = out["dumped"].as_str().unwrap();
        // The runtime's encoding of the event is byte for byte json.dumps'.
        let body = String::from_utf8(body.clone()).unwrap();
        let expected = format!("{{\"event\": {dumped}, \"dumped\": ");
        assert!(body.starts_with(&expected), "{body} vs {expected}");
    }
    // json's non-standard constants pass both ways too.
    let out = rt.invoke(8, b"[NaN, Infinity, -Infinity]", WAIT).unwrap();
    let expected =
        br#"{"event": [NaN, Infinity, -Infinity], "dumped": "[NaN, Infinity, -Infinity]"}"#;
    assert_eq!(
        out,
        RuntimeMessage::Result {
            id: 8,
            body: expected.to_vec()
        }
    );
    // Bad JSON gets json's own message.
    let (kind, message, _) = error_of(rt.invoke(9, b"{nope", WAIT).unwrap(), 9);
    assert_eq!(kind, "Runtime.UnmarshalError");
    assert!(
        message.contains("Expecting property name enclosed in double quotes"),
        "{message}"
    );
}

#[test]
fn python_reports_an_unserialisable_result() {
    let code = app_dir();
    let mut rt = start("app.unmarshalable", code.path());
    assert_eq!(rt.wait_message(WAIT).unwrap(), RuntimeMessage::InitOk);
    let (kind, message, _) = error_of(rt.invoke(9, b"{}", WAIT).unwrap(), 9);
    assert_eq!(kind, "Runtime.MarshalError");
    assert!(message.contains("set"), "{message}");
}

#[test]
fn python_init_errors_are_reported_and_the_runtime_exits() {
    let code = app_dir();
    std::fs::write(code.path().join("broken.py"), "def oops(:\n").unwrap();
    std::fs::write(
        code.path().join("raises.py"),
        "raise RuntimeError('no db')\n",
    )
    .unwrap();
    for (handler, want) in [
        ("nosuch.handler", "Runtime.ImportModuleError"),
        ("app.missing", "Runtime.HandlerNotFound"),
        ("nodot", "Runtime.MalformedHandlerName"),
        ("broken.oops", "Runtime.UserCodeSyntaxError"),
        ("raises.handler", "RuntimeError"),
    ] {
        let mut rt = start(handler, code.path());
        match rt.wait_message(WAIT).unwrap() {
            RuntimeMessage::InitError { body } => {
                let (kind, message, _) = parse_function_error(&body);
                assert_eq!(kind, want, "{handler}: {message}");
            }
            other => panic!("{handler}: expected an init error, got {other:?}"),
        }
        let status = rt.wait_exit(WAIT).unwrap();
        assert_eq!(status.code(), Some(1), "{handler}");
    }
}

#[test]
fn python_serves_the_hello_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-python");
    let mut rt = start("app.handler", &example);
    assert_eq!(rt.wait_message(WAIT).unwrap(), RuntimeMessage::InitOk);
    let out = result_json(rt.invoke(5, br#"{"name": "sprout"}"#, WAIT).unwrap(), 5);
    assert_eq!(out["message"], "Hello, sprout!");
    assert_eq!(out["request_id"], "5");
    let out = result_json(rt.invoke(6, b"", WAIT).unwrap(), 6);
    assert_eq!(out["message"], "Hello, world!");
}
