//! Round trips and refusals of every message body.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::super::{
    CallerContext, DeploySpec, ErrorBody, FrameDecoder, FunctionInfo, InvokeRequest, InvokeResponse,
};
use super::*;

fn one_frame(bytes: &[u8]) -> Frame {
    let mut dec = FrameDecoder::new(1 << 20);
    dec.feed(bytes);
    let frame = dec.next_frame().unwrap().unwrap();
    assert!(dec.is_idle(), "encoder wrote bytes past the frame");
    frame
}

fn spec() -> DeploySpec {
    DeploySpec {
        name: "hello".into(),
        runtime: "python".into(),
        handler: Some("app.handler".into()),
        code: PathBuf::from("/srv/code/hello.zip"),
        layers: vec![
            PathBuf::from("/srv/layers/deps.zip"),
            PathBuf::from("/srv/tools"),
        ],
        memory_mb: Some(256),
        timeout_secs: None,
        env: BTreeMap::from([("GREETING".into(), "hi \"there\"".into())]),
        concurrency: Some(8),
        max_queue: None,
        idle_timeout_secs: Some(2),
        affinity_mode: Some(super::super::AffinityMode::Strict),
        prewarm_callees: None,
        ephemeral_storage_mb: Some(2048),
    }
}

fn info(name: &str) -> FunctionInfo {
    FunctionInfo {
        name: name.into(),
        version: 3,
        runtime: "native".into(),
        handler: None,
        memory_mb: 128,
        timeout_secs: 30,
        env: BTreeMap::new(),
        code_bytes: 4096,
        layer_bytes: vec![100, 200],
        ephemeral_storage_mb: 1024,
        deployed_at_unix: 1_700_000_000,
        concurrency: 10,
        max_queue: 100,
        idle_timeout_secs: 300,
        affinity_mode: Default::default(),
        prewarm_callees: false,
    }
}

fn invoked(error: Option<ErrorBody>) -> InvokeResponse {
    InvokeResponse {
        invocation_id: 42,
        result: if error.is_some() {
            vec![]
        } else {
            b"{\"ok\":1}".to_vec()
        },
        error,
        cold: true,
        sandbox: 7,
        duration_us: 1234,
        total_us: 1500,
        affinity_hit: false,
    }
}

fn requests() -> Vec<Request> {
    let mut odd_path = spec();
    odd_path.code = PathBuf::from(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(
            b"/srv/\xff\xfe".to_vec(),
        ),
    );
    odd_path.layers.push(odd_path.code.join("layer"));
    vec![
        Request::Deploy(spec()),
        Request::Deploy(odd_path),
        Request::Invoke(InvokeRequest {
            function: "hello".into(),
            payload: b"{\"name\":\"x\"}".to_vec(),
            affinity: None,
            traceparent: None,
            caller: Default::default(),
        }),
        Request::Invoke(InvokeRequest {
            function: "f".into(),
            payload: (0..=255).collect(),
            affinity: Some("tenant-7".into()),
            traceparent: None,
            caller: Default::default(),
        }),
        Request::Invoke(InvokeRequest {
            function: "empty".into(),
            payload: vec![],
            affinity: None,
            traceparent: None,
            caller: Default::default(),
        }),
        Request::List,
        Request::Remove {
            name: "hello".into(),
        },
        Request::Stats { name: None },
        Request::Stats {
            name: Some("hello".into()),
        },
        Request::Pretrigger(super::super::PretriggerRequest {
            name: "hello".into(),
            count: 4,
            ttl_secs: Some(30),
        }),
        Request::Trace { invocation_id: 7 },
        Request::Profile {
            name: "hello".into(),
        },
    ]
}

fn responses() -> Vec<Response> {
    let full_error = ErrorBody {
        kind: ErrorKind::FunctionError,
        message: "bad input".into(),
        error_type: Some("ValueError".into()),
        stack_trace: Some("Traceback ...\n  line 3".into()),
    };
    vec![
        Response::Deployed(info("hello")),
        Response::Invoked(invoked(None)),
        Response::Invoked(invoked(Some(full_error.clone()))),
        Response::Invoked(invoked(Some(ErrorBody::new(
            ErrorKind::Timeout,
            "ran past 3 s",
        )))),
        Response::Invoked(InvokeResponse {
            cold: false,
            ..invoked(None)
        }),
        Response::Invoked(InvokeResponse {
            affinity_hit: true,
            ..invoked(None)
        }),
        Response::Stats(super::super::StatsReport {
            functions: vec![super::super::FunctionStats {
                name: "hello".into(),
                queue_peak: 42,
                ..Default::default()
            }],
            ..Default::default()
        }),
        Response::Pretriggered(super::super::PretriggerAccepted {
            name: "hello".into(),
            version: 2,
            count: 3,
            starting: 1,
            ttl_secs: 60,
        }),
        Response::Trace(super::super::TraceReport {
            trace_id: "ab".repeat(16),
            spans: vec![super::super::SpanInfo {
                trace_id: "ab".repeat(16),
                invocation_id: 9,
                parent_id: Some(8),
                remote_parent: None,
                depth: 1,
                function: "hello".into(),
                version: 2,
                sandbox: 3,
                cold: true,
                detached: false,
                start_unix_us: 1_700_000_000_000_000,
                queue_us: 1,
                acquire_us: 2,
                init_us: 3,
                run_us: 4,
                total_us: 10,
                error: Some(ErrorKind::Timeout),
            }],
            dropped: 5,
        }),
        Response::Profile(super::super::ProfileReport {
            function: "hello".into(),
            count: 4,
            callees: vec![super::super::CallEdge {
                function: "b".into(),
                calls: 2,
                wait_share: 0.5,
            }],
            ..Default::default()
        }),
        Response::Functions(vec![]),
        Response::Functions(vec![info("a"), info("b")]),
        Response::Removed {
            name: "hello".into(),
        },
        Response::Error(full_error),
        Response::Error(ErrorBody::new(ErrorKind::NotFound, "no function nope")),
    ]
}

#[test]
fn every_request_round_trips() {
    for (id, req) in requests().into_iter().enumerate() {
        let mut out = Vec::new();
        encode_request(id as u64 + 100, &req, &mut out);
        let frame = one_frame(&out);
        assert_eq!(frame.request_id, id as u64 + 100);
        assert_eq!(decode_request(&frame).unwrap(), req);
        assert!(matches!(
            decode_response(&frame),
            Err(DecodeError::UnexpectedKind { .. })
        ));
    }
}

#[test]
fn every_response_round_trips() {
    for (id, resp) in responses().into_iter().enumerate() {
        let mut out = Vec::new();
        encode_response(id as u64, &resp, &mut out);
        let frame = one_frame(&out);
        assert_eq!(frame.request_id, id as u64);
        assert_eq!(decode_response(&frame).unwrap(), resp);
        assert!(matches!(
            decode_request(&frame),
            Err(DecodeError::UnexpectedKind { .. })
        ));
    }
}

#[test]
fn error_body_json_uses_kind_names() {
    let mut out = Vec::new();
    encode_response(
        1,
        &Response::Error(ErrorBody::new(ErrorKind::Throttled, "queue full")),
        &mut out,
    );
    let json: serde_json::Value = serde_json::from_slice(&out[HEADER_LEN..]).unwrap();
    assert_eq!(json["kind"], "Throttled");
    assert_eq!(json["message"], "queue full");
}

#[test]
fn every_truncation_of_binary_bodies_is_refused() {
    let mut frames = Vec::new();
    for req in requests() {
        if let Request::Invoke(_) = req {
            let mut out = Vec::new();
            encode_request(1, &req, &mut out);
            frames.push((one_frame(&out), true));
        }
    }
    for resp in responses() {
        if let Response::Invoked(_) = resp {
            let mut out = Vec::new();
            encode_response(1, &resp, &mut out);
            frames.push((one_frame(&out), false));
        }
    }
    for (frame, is_request) in frames {
        for cut in 0..frame.body.len() {
            let short = Frame {
                body: frame.body[..cut].to_vec(),
                ..frame.clone()
            };
            let err = if is_request {
                match decode_request(&short) {
                    // The affinity key is a trailing optional field:
                    // cut off whole, what is left is a keyless invoke.
                    Ok(Request::Invoke(inv)) => {
                        let full = decode_request(&frame).unwrap();
                        let Request::Invoke(full) = full else {
                            panic!("not an invoke")
                        };
                        let key = full.affinity.expect("only keyed invokes end early");
                        assert_eq!(inv.affinity, None);
                        assert_eq!(cut, frame.body.len() - 5 - key.len());
                        continue;
                    }
                    other => other.map(|_| ()),
                }
            } else {
                decode_response(&short).map(|_| ())
            };
            assert!(
                matches!(err, Err(DecodeError::Truncated { .. })),
                "cut at {cut}: {err:?}"
            );
        }
        let mut long = frame.clone();
        long.body.push(0);
        let err = if is_request {
            decode_request(&long).map(|_| ())
        } else {
            decode_response(&long).map(|_| ())
        };
        assert!(matches!(err, Err(DecodeError::TrailingBytes { count: 1 })));
    }
}

#[test]
fn bad_fields_are_refused() {
    let invoke = |name: &[u8]| {
        let mut body = Vec::new();
        binary::put_bytes(&mut body, name);
        binary::put_bytes(&mut body, b"");
        Frame {
            kind: FrameKind::Invoke.code(),
            request_id: 1,
            body,
        }
    };
    assert!(matches!(
        decode_request(&invoke(b"\xff")),
        Err(DecodeError::BadUtf8 { .. })
    ));
    assert!(matches!(
        decode_request(&invoke(b"a/b")),
        Err(DecodeError::InvalidName { .. })
    ));
    assert!(matches!(
        decode_request(&invoke(b"")),
        Err(DecodeError::InvalidName { .. })
    ));

    let unknown = Frame {
        kind: 0x42,
        request_id: 1,
        body: vec![],
    };
    assert!(matches!(
        decode_request(&unknown),
        Err(DecodeError::UnknownKind { kind: 0x42 })
    ));
    assert!(matches!(
        decode_response(&unknown),
        Err(DecodeError::UnknownKind { kind: 0x42 })
    ));

    let list = Frame {
        kind: FrameKind::List.code(),
        request_id: 1,
        body: vec![1],
    };
    assert!(matches!(
        decode_request(&list),
        Err(DecodeError::TrailingBytes { count: 1 })
    ));

    let json = |kind: FrameKind, body: &str| Frame {
        kind: kind.code(),
        request_id: 1,
        body: body.as_bytes().to_vec(),
    };
    assert!(matches!(
        decode_request(&json(FrameKind::Deploy, "{")),
        Err(DecodeError::BadJson { .. })
    ));
    assert!(matches!(
        decode_request(&json(FrameKind::Remove, r#"{"name":"../x"}"#)),
        Err(DecodeError::InvalidName { .. })
    ));
    let relative = r#"{"name":"f","runtime":"native","code":"code/dir"}"#;
    assert!(matches!(
        decode_request(&json(FrameKind::Deploy, relative)),
        Err(DecodeError::RelativeCodePath { .. })
    ));
    let relative_layer = r#"{"name":"f","runtime":"native","code":"/c","layers":["/l","l"]}"#;
    assert!(matches!(
        decode_request(&json(FrameKind::Deploy, relative_layer)),
        Err(DecodeError::RelativeCodePath { path }) if path == Path::new("l")
    ));
    // A spec from a client that predates layers and ephemeral storage.
    let minimal = r#"{"name":"f","runtime":"native","code":"/c"}"#;
    let Ok(Request::Deploy(minimal)) = decode_request(&json(FrameKind::Deploy, minimal)) else {
        panic!("minimal spec refused")
    };
    assert!(minimal.layers.is_empty());
    assert_eq!(minimal.ephemeral_storage_mb, None);
    // A FunctionInfo from a daemon that predates the scheduling options
    // decodes with their defaults.
    let old_info = r#"[{"name":"f","version":1,"runtime":"native","memory_mb":128,
        "timeout_secs":3,"code_bytes":1,"deployed_at_unix":1}]"#;
    let Ok(Response::Functions(infos)) = decode_response(&json(FrameKind::Functions, old_info))
    else {
        panic!("old FunctionInfo refused")
    };
    assert_eq!(
        (
            infos[0].concurrency,
            infos[0].max_queue,
            infos[0].idle_timeout_secs
        ),
        (10, 100, 300)
    );
    assert_eq!(
        (&infos[0].layer_bytes, infos[0].ephemeral_storage_mb),
        (&vec![], 512)
    );
    assert!(matches!(
        decode_request(&json(FrameKind::Stats, r#"{"name":"a b"}"#)),
        Err(DecodeError::InvalidName { .. })
    ));
    for len in [0, crate::protocol::MAX_AFFINITY_KEY + 1] {
        let mut out = Vec::new();
        let req = Request::Invoke(InvokeRequest {
            function: "f".into(),
            payload: vec![],
            affinity: Some("k".repeat(len)),
            traceparent: None,
            caller: Default::default(),
        });
        encode_request(1, &req, &mut out);
        assert!(matches!(
            decode_request(&one_frame(&out)),
            Err(DecodeError::AffinityKey { .. })
        ));
    }
    assert!(matches!(
        decode_response(&json(FrameKind::Error, r#"{"kind":"Nope","message":""}"#)),
        Err(DecodeError::BadJson { .. })
    ));

    // Invoked with unknown flag bits, and with an unknown error kind.
    let mut out = Vec::new();
    encode_response(
        1,
        &Response::Invoked(invoked(Some(ErrorBody::new(ErrorKind::Timeout, "t")))),
        &mut out,
    );
    let mut frame = one_frame(&out);
    frame.body[32] |= 0x80;
    assert!(matches!(
        decode_response(&frame),
        Err(DecodeError::BadFlags { .. })
    ));
    frame.body[32] &= !0x80;
    let kind_at = 33 + 4; // flags, empty result
    frame.body[kind_at] = 0xEE;
    assert!(matches!(
        decode_response(&frame),
        Err(DecodeError::BadErrorKind { code: 0xEE })
    ));
}

#[test]
fn random_invocations_round_trip_through_random_splits() {
    let mut rng = super::super::test_rng::Rng::new(7);
    for _ in 0..100 {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for id in 0..rng.below(6) as u64 {
            let payload: Vec<u8> = (0..rng.below(500)).map(|_| rng.below(256) as u8).collect();
            let req = Request::Invoke(InvokeRequest {
                function: format!("f{id}"),
                payload,
                affinity: (id % 2 == 1).then(|| format!("key{id}")),
                traceparent: None,
                caller: Default::default(),
            });
            encode_request(id, &req, &mut stream);
            want.push(req);
        }
        let mut dec = FrameDecoder::new(4096);
        let mut got = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = (rng.below(40) + 1).min(rest.len());
            dec.feed(&rest[..n]);
            rest = &rest[n..];
            while let Some(frame) = dec.next_frame() {
                got.push(decode_request(&frame.unwrap()).unwrap());
            }
        }
        assert_eq!(got, want);
    }
}

#[test]
fn a_traceparent_rides_on_an_invoke_with_or_without_a_key() {
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for affinity in [None, Some("tenant".to_string())] {
        let req = Request::Invoke(InvokeRequest {
            function: "f".into(),
            payload: b"{}".to_vec(),
            affinity,
            traceparent: Some(parent.into()),
            caller: Default::default(),
        });
        let mut out = Vec::new();
        encode_request(1, &req, &mut out);
        assert_eq!(decode_request(&one_frame(&out)).unwrap(), req);
    }
    let bad = Request::Invoke(InvokeRequest {
        function: "f".into(),
        payload: vec![],
        affinity: None,
        traceparent: Some("00-zz".into()),
        caller: Default::default(),
    });
    let mut out = Vec::new();
    encode_request(1, &bad, &mut out);
    assert!(matches!(
        decode_request(&one_frame(&out)),
        Err(DecodeError::Traceparent { .. })
    ));
}

#[test]
fn caller_context_rides_on_an_invoke_after_the_other_options() {
    let context = r#"{"custom":{"k":"v"},"client":{"app_title":"t"}}"#;
    let identity = r#"{"cognitoIdentityId":"id","cognitoIdentityPoolId":"pool"}"#;
    for (affinity, client_context, cognito_identity) in [
        (None, Some(context), None),
        (None, None, Some(identity)),
        (Some("tenant"), Some(context), Some(identity)),
    ] {
        let req = Request::Invoke(InvokeRequest {
            function: "f".into(),
            payload: b"{}".to_vec(),
            affinity: affinity.map(str::to_owned),
            traceparent: None,
            caller: CallerContext {
                client_context: client_context.map(str::to_owned),
                cognito_identity: cognito_identity.map(str::to_owned),
            },
        });
        let mut out = Vec::new();
        encode_request(1, &req, &mut out);
        assert_eq!(decode_request(&one_frame(&out)).unwrap(), req);
    }
    for bad in [
        "not json".to_owned(),
        "[1]".to_owned(),
        format!(
            r#"{{"k":"{}"}}"#,
            "x".repeat(crate::protocol::MAX_CALLER_CONTEXT)
        ),
    ] {
        let req = Request::Invoke(InvokeRequest {
            function: "f".into(),
            payload: vec![],
            affinity: None,
            traceparent: None,
            caller: CallerContext {
                client_context: Some(bad),
                cognito_identity: None,
            },
        });
        let mut out = Vec::new();
        encode_request(1, &req, &mut out);
        assert!(matches!(
            decode_request(&one_frame(&out)),
            Err(DecodeError::CallerContext {
                field: "client context"
            })
        ));
    }
}

#[test]
fn an_absent_option_at_the_end_is_refused() {
    let req = Request::Invoke(InvokeRequest {
        function: "f".into(),
        payload: vec![],
        affinity: Some("k".into()),
        traceparent: None,
        caller: Default::default(),
    });
    let mut out = Vec::new();
    encode_request(1, &req, &mut out);
    let mut frame = one_frame(&out);
    frame.body.push(0);
    assert!(matches!(
        decode_request(&frame),
        Err(DecodeError::TrailingBytes { .. })
    ));
}
