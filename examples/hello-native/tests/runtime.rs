//! The built `bootstrap` run as the sandbox init would leave it: ring at
//! fds 3-5, the function's environment set, READY already sent (so the
//! first message is INIT_OK).

use std::process::Command;
use std::time::Duration;

use sprout_runtime::sprout::ring::harness::RuntimeProcess;
use sprout_runtime::sprout::ring::{parse_function_error, Assignment, RuntimeMessage};

const WAIT: Duration = Duration::from_secs(20);

fn start() -> RuntimeProcess {
    let assignment = Assignment {
        function: "hello".into(),
        version: 3,
        handler: String::new(),
        env: Default::default(),
        memory_mb: 64,
        timeout_ms: 5000,
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bootstrap"));
    let env = assignment.runtime_env(Vec::new());
    cmd.env_clear()
        .envs(env.iter().filter_map(|kv| kv.split_once('=')));
    let mut rt = RuntimeProcess::spawn(cmd, 1 << 16).unwrap();
    assert_eq!(rt.wait_message(WAIT).unwrap(), RuntimeMessage::InitOk);
    rt
}

fn json_result(message: RuntimeMessage, id: u64) -> serde_json::Value {
    match message {
        RuntimeMessage::Result { id: got, body } if got == id => {
            serde_json::from_slice(&body).unwrap()
        }
        other => panic!("expected result {id}, got {other:?}"),
    }
}

#[test]
fn hello_native_greets_by_name_and_request_id() {
    let mut rt = start();
    let out = json_result(rt.invoke(11, br#"{"name":"Ada"}"#, WAIT).unwrap(), 11);
    assert_eq!(out["message"], "Hello, Ada!");
    assert_eq!(out["request_id"], "11");
    assert_eq!(out["function"], "hello");
    assert!(out["remaining_ms"].as_u64().unwrap() > 10_000);
    let out = json_result(rt.invoke(12, b"", WAIT).unwrap(), 12);
    assert_eq!(out["message"], "Hello, world!");
}

#[test]
fn hello_native_reports_bad_json_and_keeps_serving() {
    let mut rt = start();
    match rt.invoke(1, b"{not json", WAIT).unwrap() {
        RuntimeMessage::Error { id: 1, body } => {
            assert_eq!(parse_function_error(&body).0, "Runtime.UnmarshalError")
        }
        other => panic!("expected an error, got {other:?}"),
    }
    let out = json_result(rt.invoke(2, br#"{"name":"again"}"#, WAIT).unwrap(), 2);
    assert_eq!(out["message"], "Hello, again!");
}

#[test]
fn hello_native_without_its_ring_exits_with_status_2() {
    let status = Command::new(env!("CARGO_BIN_EXE_bootstrap"))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}
