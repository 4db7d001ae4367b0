//! CALL and CALL_RESULT across both ends: a nested call's round trip and
//! the CALL bodies the daemon refuses.

use super::layout::kind;
use super::*;

fn pair() -> (HostRing, RuntimeRing) {
    let (host, end) = HostRing::create(4096).unwrap();
    let runtime = RuntimeRing::from_fds(end.memfd, end.request_bell, end.response_bell).unwrap();
    (host, runtime)
}

/// Wait for the runtime's next message (it is on another thread).
fn next_message(host: &mut HostRing) -> RuntimeMessage {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(message) = host.recv().unwrap() {
            return message;
        }
        assert!(std::time::Instant::now() < deadline, "no message came");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn a_call_goes_out_and_its_result_comes_back() {
    let (mut host, mut runtime) = pair();
    let caller = std::thread::spawn(move || {
        let ok = runtime.call("callee", false, b"{\"x\":1}").unwrap();
        let failed = runtime.call("nobody", true, b"").unwrap();
        (ok, failed)
    });
    assert_eq!(
        next_message(&mut host),
        RuntimeMessage::Call {
            id: 1,
            function: "callee".into(),
            detached: false,
            payload: b"{\"x\":1}".to_vec(),
        }
    );
    host.send_call_result(1, br#"{"ok":true,"invocation_id":42}"#, b"[1,2]")
        .unwrap();
    let RuntimeMessage::Call { id, detached, .. } = next_message(&mut host) else {
        panic!("expected a CALL");
    };
    assert_eq!((id, detached), (2, true));
    let meta = br#"{"ok":false,"invocation_id":0,"error":{"kind":"NotFound","message":"no function named nobody","error_type":null}}"#;
    host.send_call_result(2, meta, b"").unwrap();
    let (ok, failed) = caller.join().unwrap();
    assert_eq!(ok.invocation_id, 42);
    assert_eq!(ok.outcome, Ok(b"[1,2]".to_vec()));
    let error = failed.outcome.unwrap_err();
    assert_eq!((error.kind.as_str(), error.error_type), ("NotFound", None));
}

#[test]
fn a_call_result_for_another_call_is_a_violation() {
    let (mut host, mut runtime) = pair();
    let caller = std::thread::spawn(move || runtime.call("f", false, b"").unwrap_err());
    assert!(matches!(
        next_message(&mut host),
        RuntimeMessage::Call { id: 1, .. }
    ));
    host.send_call_result(7, br#"{"ok":true}"#, b"").unwrap();
    let err = caller.join().unwrap();
    assert!(err.to_string().contains("call 7"), "{err}");
}

#[test]
fn malformed_calls_are_violations() {
    let long = "f".repeat(MAX_CALL_NAME + 1);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"\x01".to_vec(), "no meta length"),
        (b"\xff\0\0\0{}".to_vec(), "runs past"),
        (with_meta(b"{\"async\":false}"), "expected JSON"),
        (
            with_meta(b"{\"function\":\"f\",\"parent\":1}"),
            "expected JSON",
        ),
        (with_meta(b"{\"function\":\"\"}"), "0 bytes"),
        (
            with_meta(format!("{{\"function\":\"{long}\"}}").as_bytes()),
            "257 bytes",
        ),
    ];
    for (body, want) in cases {
        let (mut host, mut runtime) = pair();
        runtime.send_raw(kind::CALL, 1, &body).unwrap();
        let err = host.recv().unwrap_err();
        assert!(err.to_string().contains(want), "{err} (wanted {want})");
    }
}

fn with_meta(meta: &[u8]) -> Vec<u8> {
    let mut body = (meta.len() as u32).to_le_bytes().to_vec();
    body.extend_from_slice(meta);
    body
}
