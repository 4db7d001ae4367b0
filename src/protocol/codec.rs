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
    #[error("{reason}")]
    Traceparent { reason: String },
    #[error("{field} must be a JSON object of at most {max} bytes", max = super::MAX_CALLER_CONTEXT)]
    CallerContext { field: &'static str },
}

/// A client context or Cognito identity: a JSON object, bounded.
fn check_caller_context(field: &'static str, value: &str) -> Result<(), DecodeError> {
    let object = value.len() <= super::MAX_CALLER_CONTEXT
        && serde_json::from_str::<serde_json::Value>(value).is_ok_and(|v| v.is_object());
    if object {
        Ok(())
    } else {
        Err(DecodeError::CallerContext { field })
    }
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
struct TraceBody {
    invocation_id: u64,
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
        Request::Trace { invocation_id } => json_frame(
            out,
            FrameKind::Trace,
            request_id,
            &TraceBody {
                invocation_id: *invocation_id,
            },
        ),
        Request::Profile { name } => json_frame(
            out,
            FrameKind::Profile,
            request_id,
            &NameBody { name: name.clone() },
        ),
    }
}

/// Decode a request frame, validating function names and the code path.
pub fn decode_request(frame: &Frame) -> Result<Request, DecodeError> {
    let kind = known_kind(frame.kind)?;
    let req = match kind {
        FrameKind::Deploy => {
            let spec: super::DeploySpec = json_body(kind, &frame.body)?;
            check_name(&spec.name)?;
            let relative = std::iter::once(&spec.code)
                .chain(&spec.layers)
                .find(|path| !path.is_absolute());
            if let Some(path) = relative {
                return Err(DecodeError::RelativeCodePath { path: path.clone() });
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
            if let Some(parent) = &inv.traceparent {
                crate::trace::parse_traceparent(parent)
                    .map_err(|reason| DecodeError::Traceparent { reason })?;
            }
            for (field, value) in [
                ("client context", &inv.caller.client_context),
                ("cognito identity", &inv.caller.cognito_identity),
            ] {
                if let Some(value) = value {
                    check_caller_context(field, value)?;
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
        FrameKind::Trace => {
            let TraceBody { invocation_id } = json_body(kind, &frame.body)?;
            Request::Trace { invocation_id }
        }
        FrameKind::Profile => {
            let NameBody { name } = json_body(kind, &frame.body)?;
            check_name(&name)?;
            Request::Profile { name }
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
        Response::Trace(report) => json_frame(out, FrameKind::TraceReport, request_id, report),
        Response::Profile(report) => json_frame(out, FrameKind::ProfileReport, request_id, report),
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
        FrameKind::TraceReport => Response::Trace(json_body(kind, &frame.body)?),
        FrameKind::ProfileReport => Response::Profile(json_body(kind, &frame.body)?),
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
mod tests;
