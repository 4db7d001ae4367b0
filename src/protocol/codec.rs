//! Encoding and decoding of message bodies.
//!
//! The hot path (Invoke, Invoked) is hand-encoded binary in which every
//! length is checked against what remains of the body; control messages
//! are JSON.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use thiserror::Error;

use super::binary;
use super::frame::{encode_frame, write_header, Frame, FrameKind, HEADER_LEN};
use super::messages::{Request, Response};
use super::{validate_function_name, ErrorKind};

/// A frame whose body is not a valid message. The daemon answers
/// [`ErrorKind::BadRequest`] and keeps the connection.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("unknown frame kind {kind:#04x}")]
    UnknownKind { kind: u8 },
    #[error("frame kind {} is not a {expected}", kind.as_str())]
    UnexpectedKind {
        kind: FrameKind,
        expected: &'static str,
    },
    #[error("body ends inside {field}: needs {needed} bytes, {remaining} left")]
    Truncated {
        field: &'static str,
        needed: u64,
        remaining: usize,
    },
    #[error("{count} unexpected bytes after the end of the message")]
    TrailingBytes { count: usize },
    #[error("{field} is not valid utf-8")]
    BadUtf8 { field: &'static str },
    #[error("unknown flag bits {flags:#04x}")]
    BadFlags { flags: u8 },
    #[error("unknown error kind code {code}")]
    BadErrorKind { code: u16 },
    #[error("bad json body of a {} frame: {source}", kind.as_str())]
    BadJson {
        kind: FrameKind,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid function name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("code path {path:?} is not absolute")]
    RelativeCodePath { path: std::path::PathBuf },
    #[error("affinity key of {len} bytes is not 1 to {max} bytes", max = super::MAX_AFFINITY_KEY)]
    AffinityKey { len: usize },
}

impl DecodeError {
    /// The error kind to answer with.
    pub fn error_kind(&self) -> ErrorKind {
        ErrorKind::BadRequest
    }
}

#[derive(Serialize, Deserialize)]
struct NameBody {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct StatsBody {
    #[serde(default)]
    name: Option<String>,
}

/// Append the frame for request `req` with id `request_id` to `out`.
pub fn encode_request(request_id: u64, req: &Request, out: &mut Vec<u8>) {
    match req {
        Request::Deploy(spec) => json_frame(out, FrameKind::Deploy, request_id, spec),
        Request::Invoke(inv) => {
            let body_len = binary::invoke_len(inv);
            out.reserve(HEADER_LEN + body_len);
            write_header(out, FrameKind::Invoke, request_id, body_len);
            binary::encode_invoke(inv, out);
        }
        Request::List => encode_frame(out, FrameKind::List, request_id, &[]),
        Request::Remove { name } => json_frame(
            out,
            FrameKind::Remove,
            request_id,
            &NameBody { name: name.clone() },
        ),
        Request::Stats { name } => json_frame(
            out,
            FrameKind::Stats,
            request_id,
            &StatsBody { name: name.clone() },
        ),
        Request::Pretrigger(req) => json_frame(out, FrameKind::Pretrigger, request_id, req),
    }
}

/// Decode a request frame, validating function names and the code path.
pub fn decode_request(frame: &Frame) -> Result<Request, DecodeError> {
    let kind = known_kind(frame.kind)?;
    let req = match kind {
        FrameKind::Deploy => {
            let spec: super::DeploySpec = json_body(kind, &frame.body)?;
            check_name(&spec.name)?;
            if !spec.code.is_absolute() {
                return Err(DecodeError::RelativeCodePath { path: spec.code });
            }
            Request::Deploy(spec)
        }
        FrameKind::Invoke => {
            let inv = binary::decode_invoke(&frame.body)?;
            check_name(&inv.function)?;
            if let Some(key) = &inv.affinity {
                if key.is_empty() || key.len() > super::MAX_AFFINITY_KEY {
                    return Err(DecodeError::AffinityKey { len: key.len() });
                }
            }
            Request::Invoke(inv)
        }
        FrameKind::List => {
            binary::Reader::new(&frame.body).end()?;
            Request::List
        }
        FrameKind::Remove => {
            let NameBody { name } = json_body(kind, &frame.body)?;
            check_name(&name)?;
            Request::Remove { name }
        }
        FrameKind::Stats => {
            let StatsBody { name } = json_body(kind, &frame.body)?;
            if let Some(name) = &name {
                check_name(name)?;
            }
            Request::Stats { name }
        }
        FrameKind::Pretrigger => {
            let req: super::PretriggerRequest = json_body(kind, &frame.body)?;
            check_name(&req.name)?;
            Request::Pretrigger(req)
        }
        _ => {
            return Err(DecodeError::UnexpectedKind {
                kind,
                expected: "request",
            })
        }
    };
    Ok(req)
}

/// Append the frame for response `resp` to request `request_id` to `out`.
pub fn encode_response(request_id: u64, resp: &Response, out: &mut Vec<u8>) {
    match resp {
        Response::Deployed(info) => json_frame(out, FrameKind::Deployed, request_id, info),
        Response::Invoked(inv) => {
            let mut body = Vec::with_capacity(binary::invoked_len(inv));
            binary::encode_invoked(inv, &mut body);
            encode_frame(out, FrameKind::Invoked, request_id, &body);
        }
        Response::Functions(list) => json_frame(out, FrameKind::Functions, request_id, list),
        Response::Removed { name } => json_frame(
            out,
            FrameKind::Removed,
            request_id,
            &NameBody { name: name.clone() },
        ),
        Response::Stats(report) => json_frame(out, FrameKind::StatsReport, request_id, report),
        Response::Pretriggered(accepted) => {
            json_frame(out, FrameKind::Pretriggered, request_id, accepted)
        }
        Response::Error(err) => json_frame(out, FrameKind::Error, request_id, err),
    }
}

/// Decode a response frame.
pub fn decode_response(frame: &Frame) -> Result<Response, DecodeError> {
    let kind = known_kind(frame.kind)?;
    let resp = match kind {
        FrameKind::Deployed => Response::Deployed(json_body(kind, &frame.body)?),
        FrameKind::Invoked => Response::Invoked(binary::decode_invoked(&frame.body)?),
        FrameKind::Functions => Response::Functions(json_body(kind, &frame.body)?),
        FrameKind::Removed => {
            let NameBody { name } = json_body(kind, &frame.body)?;
            Response::Removed { name }
        }
        FrameKind::StatsReport => Response::Stats(json_body(kind, &frame.body)?),
        FrameKind::Pretriggered => Response::Pretriggered(json_body(kind, &frame.body)?),
        FrameKind::Error => Response::Error(json_body(kind, &frame.body)?),
        _ => {
            return Err(DecodeError::UnexpectedKind {
                kind,
                expected: "response",
            })
        }
    };
    Ok(resp)
}

fn known_kind(code: u8) -> Result<FrameKind, DecodeError> {
    FrameKind::from_code(code).ok_or(DecodeError::UnknownKind { kind: code })
}

fn check_name(name: &str) -> Result<(), DecodeError> {
    validate_function_name(name).map_err(|reason| {
        let mut shown: String = name.chars().take(80).collect();
        if shown.len() < name.len() {
            shown.push('…');
        }
        DecodeError::InvalidName {
            name: shown,
            reason,
        }
    })
}

fn json_frame<T: Serialize>(out: &mut Vec<u8>, kind: FrameKind, request_id: u64, value: &T) {
    // Serializing these plain structs cannot fail: every map key is a
    // string and paths have a lossless fallback.
    let body = serde_json::to_vec(value).expect("control message serializes to json");
    encode_frame(out, kind, request_id, &body);
}

fn json_body<T: DeserializeOwned>(kind: FrameKind, body: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(body).map_err(|source| DecodeError::BadJson { kind, source })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::super::{
        DeploySpec, ErrorBody, FrameDecoder, FunctionInfo, InvokeRequest, InvokeResponse,
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
            code: PathBuf::from("/srv/code/hello"),
            memory_mb: Some(256),
            timeout_secs: None,
            env: BTreeMap::from([("GREETING".into(), "hi \"there\"".into())]),
            concurrency: Some(8),
            max_queue: None,
            idle_timeout_secs: Some(2),
            affinity_mode: Some(super::super::AffinityMode::Strict),
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
            deployed_at_unix: 1_700_000_000,
            concurrency: 10,
            max_queue: 100,
            idle_timeout_secs: 300,
            affinity_mode: Default::default(),
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
        vec![
            Request::Deploy(spec()),
            Request::Deploy(odd_path),
            Request::Invoke(InvokeRequest {
                function: "hello".into(),
                payload: b"{\"name\":\"x\"}".to_vec(),
                affinity: None,
            }),
            Request::Invoke(InvokeRequest {
                function: "f".into(),
                payload: (0..=255).collect(),
                affinity: Some("tenant-7".into()),
            }),
            Request::Invoke(InvokeRequest {
                function: "empty".into(),
                payload: vec![],
                affinity: None,
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
        let minimal = r#"{"name":"f","runtime":"native","code":"/c"}"#;
        assert!(matches!(
            decode_request(&json(FrameKind::Deploy, minimal)),
            Ok(Request::Deploy(_))
        ));
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
}
