//! The runtime loop against a real host ring, in a second thread.

use std::time::Duration;

use sprout::ring::{invoke_meta, parse_function_error, HostRing, RuntimeMessage, RuntimeRing};

use super::*;

fn info() -> FunctionInfo {
    FunctionInfo {
        name: "echo".into(),
        version: 1,
        memory_mb: 64,
        timeout_ms: 1000,
    }
}

fn wait(host: &mut HostRing) -> RuntimeMessage {
    for _ in 0..2000 {
        if let Some(message) = host.recv().unwrap() {
            return message;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("no message from the runtime thread");
}

fn start<F>(handler: F) -> HostRing
where
    F: FnMut(&[u8], &Context) -> Result<Vec<u8>, HandlerError> + Send + 'static,
{
    let (mut host, end) = HostRing::create(4096).unwrap();
    std::thread::spawn(move || {
        let ring = RuntimeRing::from_fds(end.memfd, end.request_bell, end.response_bell).unwrap();
        let _ = serve(ring, info(), handler);
    });
    assert_eq!(wait(&mut host), RuntimeMessage::InitOk);
    host
}

#[test]
fn results_errors_and_panics_each_answer_their_invocation() {
    let mut host = start(|payload, ctx| match payload {
        b"panic" => panic!("boom {}", ctx.invocation_id),
        b"fail" => Err(HandlerError::new("Validation", "no")),
        b"huge" => Ok(vec![0u8; 1 << 20]),
        _ => Ok([payload, ctx.function_name.as_bytes()].concat()),
    });
    host.send_invoke(1, &invoke_meta(1, 0), b"hi ").unwrap();
    assert_eq!(
        wait(&mut host),
        RuntimeMessage::Result {
            id: 1,
            body: b"hi echo".to_vec()
        }
    );

    host.send_invoke(2, b"", b"panic").unwrap();
    let RuntimeMessage::Error { id: 2, body } = wait(&mut host) else {
        panic!("expected error")
    };
    assert_eq!(parse_function_error(&body).0, "Panic");
    assert_eq!(parse_function_error(&body).1, "boom 2");

    host.send_invoke(3, b"", b"fail").unwrap();
    let RuntimeMessage::Error { id: 3, body } = wait(&mut host) else {
        panic!("expected error")
    };
    assert_eq!(parse_function_error(&body).0, "Validation");

    host.send_invoke(4, b"", b"huge").unwrap();
    let RuntimeMessage::Error { id: 4, body } = wait(&mut host) else {
        panic!("expected error")
    };
    assert_eq!(parse_function_error(&body).0, "Runtime.ResponseTooLarge");

    // Still serving after all of that.
    host.send_invoke(5, b"", b"ok ").unwrap();
    assert_eq!(
        wait(&mut host),
        RuntimeMessage::Result {
            id: 5,
            body: b"ok echo".to_vec()
        }
    );
}

#[test]
fn oversized_error_bodies_are_cut_to_fit() {
    let err = HandlerError {
        error_type: "T".into(),
        message: "é".repeat(10_000),
        stack_trace: vec!["frame".into(); 1000],
    };
    let body = fitting_body(err, 4096);
    assert!(body.len() <= 4096);
    let (kind, message, stack) = parse_function_error(&body);
    assert_eq!(kind, "T");
    assert!(message.chars().all(|c| c == 'é') && !message.is_empty());
    assert_eq!(stack, None);
}

#[test]
fn context_carries_the_deadline_from_the_invoke_meta() {
    let mut host = start(|_, ctx| Ok(ctx.remaining_time().as_millis().to_string().into_bytes()));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    host.send_invoke(1, &invoke_meta(1, now_ms + 60_000), b"")
        .unwrap();
    let RuntimeMessage::Result { body, .. } = wait(&mut host) else {
        panic!("expected result")
    };
    let left: u64 = String::from_utf8(body).unwrap().parse().unwrap();
    assert!((50_000..=60_000).contains(&left), "{left}");
}

#[test]
fn context_carries_the_affinity_key_from_the_invoke_meta() {
    let mut host = start(|_, ctx| Ok(format!("{:?}", ctx.affinity_key).into_bytes()));
    host.send_invoke(
        1,
        br#"{"id":1,"deadline_ms":0,"affinity_key":"tenant-7"}"#,
        b"",
    )
    .unwrap();
    let RuntimeMessage::Result { body, .. } = wait(&mut host) else {
        panic!("expected result")
    };
    assert_eq!(body, br#"Some("tenant-7")"#);
    host.send_invoke(2, &invoke_meta(2, 0), b"").unwrap();
    let RuntimeMessage::Result { body, .. } = wait(&mut host) else {
        panic!("expected result")
    };
    assert_eq!(body, b"None");
}

#[test]
fn a_handler_calls_another_function_through_the_ring() {
    let mut host = start(|payload, ctx| {
        let out = match ctx.invoke(std::str::from_utf8(payload).unwrap(), b"{}") {
            Ok(result) => result,
            Err(err) => format!("{}|{}", err.kind, err.message).into_bytes(),
        };
        let id = ctx
            .invoke_async("later", b"")
            .map_err(|e| HandlerError::new("X", e.to_string()))?;
        Ok([
            out,
            format!(" async={id} trace={:?}", ctx.trace_id).into_bytes(),
        ]
        .concat())
    });
    let meta = br#"{"id":1,"deadline_ms":0,"trace_id":"ab","parent_id":null,"depth":0}"#;
    host.send_invoke(1, meta, b"callee").unwrap();
    let RuntimeMessage::Call {
        id: call,
        function,
        detached: false,
        payload,
    } = wait(&mut host)
    else {
        panic!("expected a synchronous CALL");
    };
    assert_eq!(
        (function.as_str(), payload.as_slice()),
        ("callee", &b"{}"[..])
    );
    host.send_call_result(call, br#"{"ok":true,"invocation_id":2}"#, b"[7]")
        .unwrap();
    let RuntimeMessage::Call {
        id: call,
        detached: true,
        ..
    } = wait(&mut host)
    else {
        panic!("expected a detached CALL");
    };
    host.send_call_result(call, br#"{"ok":true,"invocation_id":3}"#, b"")
        .unwrap();
    assert_eq!(
        wait(&mut host),
        RuntimeMessage::Result {
            id: 1,
            body: b"[7] async=3 trace=Some(\"ab\")".to_vec()
        }
    );

    // A refused call is an error the handler sees, not a broken runtime.
    host.send_invoke(2, &invoke_meta(2, 0), b"nobody").unwrap();
    let RuntimeMessage::Call { id: call, .. } = wait(&mut host) else {
        panic!("expected a CALL");
    };
    let refused =
        br#"{"ok":false,"error":{"kind":"NotFound","message":"no function named nobody"}}"#;
    host.send_call_result(call, refused, b"").unwrap();
    let RuntimeMessage::Call { id: call, .. } = wait(&mut host) else {
        panic!("expected a CALL");
    };
    host.send_call_result(call, br#"{"ok":true,"invocation_id":5}"#, b"")
        .unwrap();
    let RuntimeMessage::Result { id: 2, body } = wait(&mut host) else {
        panic!("expected a result");
    };
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "NotFound|no function named nobody async=5 trace=None"
    );
}
