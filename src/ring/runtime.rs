//! The runtime's side of the ring, for Rust runtimes (`sprout-runtime`) and
//! the sandbox init that announces READY before it execs a native
//! `bootstrap`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::layout::{self, kind};
use super::spsc::{Consumer, Producer, RingRegion};
use super::{ring_bell, RingError};
use crate::sys::shm::{file_size, SharedMapping};

/// Descriptor numbers a runtime inherits (see runtimes/README.md).
pub const RING_FD: i32 = 3;
pub const REQUEST_BELL_FD: i32 = 4;
pub const RESPONSE_BELL_FD: i32 = 5;
pub const CONTROL_FD: i32 = 6;

/// How long a push waits for the daemon to drain a full response ring.
const FULL_WAIT: Duration = Duration::from_secs(10);

/// One invocation pulled from the request ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoke {
    pub id: u64,
    /// Unix epoch milliseconds after which the daemon kills the sandbox;
    /// `None` when the meta carries none.
    pub deadline_ms: Option<u64>,
    /// The raw meta JSON (for keys this version does not parse).
    pub meta: Vec<u8>,
    pub payload: Vec<u8>,
}

#[derive(Deserialize)]
struct Meta {
    deadline_ms: Option<u64>,
}

/// The runtime's end of a ring.
#[derive(Debug)]
pub struct RuntimeRing {
    map: SharedMapping,
    requests: Consumer,
    responses: Producer,
    request_bell: OwnedFd,
    response_bell: OwnedFd,
    /// CALLs sent so far (the next call's id is one more).
    calls: u64,
}

impl RuntimeRing {
    /// Take fds 3 (ring memfd), 4 (request bell) and 5 (response bell).
    pub fn open_inherited() -> Result<RuntimeRing, RingError> {
        let take =
            |fd| crate::sys::fd::inherited(fd).map_err(|source| RingError::Inherit { fd, source });
        RuntimeRing::from_fds(
            take(RING_FD)?,
            take(REQUEST_BELL_FD)?,
            take(RESPONSE_BELL_FD)?,
        )
    }

    /// Map a ring handed over as descriptors and validate its header. The
    /// indices are picked up where the previous user of this end (the
    /// sandbox init, before it exec'd the bootstrap) left them.
    pub fn from_fds(
        memfd: OwnedFd,
        request_bell: OwnedFd,
        response_bell: OwnedFd,
    ) -> Result<RuntimeRing, RingError> {
        let size = file_size(memfd.as_fd()).map_err(|source| RingError::Map { len: 0, source })?;
        if size < layout::HEADER_SIZE {
            return Err(RingError::BadHeader {
                reason: format!("ring memfd is {size} bytes, smaller than its header"),
            });
        }
        let map = SharedMapping::map(memfd.as_fd(), size)
            .map_err(|source| RingError::Map { len: size, source })?;
        let mut fixed = [0u8; layout::FIXED_FIELDS];
        map.copy_out(0, &mut fixed)
            .map_err(|e| RingError::BadHeader {
                reason: e.to_string(),
            })?;
        let regions =
            layout::decode_fixed(&fixed, size).map_err(|reason| RingError::BadHeader { reason })?;
        let request = RingRegion {
            data: regions.request_offset,
            capacity: regions.request_capacity,
            head: layout::OFF_REQUEST_HEAD,
            tail: layout::OFF_REQUEST_TAIL,
        };
        let response = RingRegion {
            data: regions.response_offset,
            capacity: regions.response_capacity,
            head: layout::OFF_RESPONSE_HEAD,
            tail: layout::OFF_RESPONSE_TAIL,
        };
        // Relaxed: these are our own indices, last stored by this sandbox
        // (possibly by the init before exec, which is a full barrier).
        let head = map.atomic_u64(request.head).load(Ordering::Relaxed);
        let tail = map.atomic_u64(response.tail).load(Ordering::Relaxed);
        Ok(RuntimeRing {
            map,
            requests: Consumer::new(request, head),
            responses: Producer::new(response, tail),
            request_bell,
            response_bell,
            calls: 0,
        })
    }

    /// The largest body this runtime may push (RESULT, ERROR...).
    pub fn max_body(&self) -> usize {
        self.responses.region().max_body()
    }

    fn send(&mut self, kind: u16, id: u64, body: &[u8]) -> Result<(), RingError> {
        let started = Instant::now();
        let mut pause = Duration::from_micros(20);
        loop {
            match self.responses.push(&self.map, kind, id, &[body]) {
                Ok(()) => break,
                Err(RingError::Full { .. }) if started.elapsed() < FULL_WAIT => {
                    // The daemon drains as soon as the bell rang; nudge it.
                    ring_bell(self.response_bell.as_fd(), "response")?;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                Err(err) => return Err(err),
            }
        }
        ring_bell(self.response_bell.as_fd(), "response")
    }

    /// Push any record (tests play a runtime that breaks the protocol).
    #[cfg(test)]
    pub(super) fn send_raw(&mut self, kind: u16, id: u64, body: &[u8]) -> Result<(), RingError> {
        self.send(kind, id, body)
    }

    pub fn send_ready(&mut self) -> Result<(), RingError> {
        self.send(kind::READY, 0, &[])
    }

    pub fn send_init_ok(&mut self) -> Result<(), RingError> {
        self.send(kind::INIT_OK, 0, &[])
    }

    /// `body` is error JSON (`{"errorType","errorMessage","stackTrace"}`).
    pub fn send_init_error(&mut self, body: &[u8]) -> Result<(), RingError> {
        self.send(kind::INIT_ERROR, 0, body)
    }

    pub fn send_result(&mut self, id: u64, body: &[u8]) -> Result<(), RingError> {
        self.send(kind::RESULT, id, body)
    }

    /// `body` is error JSON (`{"errorType","errorMessage","stackTrace"}`).
    pub fn send_error(&mut self, id: u64, body: &[u8]) -> Result<(), RingError> {
        self.send(kind::ERROR, id, body)
    }

    /// Block until the daemon pushes an INVOKE and return it.
    pub fn next_invoke(&mut self) -> Result<Invoke, RingError> {
        let (id, body) = self.next_record(kind::INVOKE)?;
        parse_invoke(id, body)
    }

    /// The INVOKE at the head of the request ring, if any, without
    /// blocking: for a runtime that waits on [`RuntimeRing::request_bell`]
    /// in its own poll loop (the Runtime API bridge). Any other record
    /// type is a violation (such a runtime sends no CALL).
    pub fn try_next_invoke(&mut self) -> Result<Option<Invoke>, RingError> {
        let limit = self.requests.region().max_body();
        let Some(record) = self.requests.pop(&self.map, limit)? else {
            return Ok(None);
        };
        if record.kind != kind::INVOKE {
            return Err(RingError::Violation {
                reason: format!(
                    "unexpected message type {} on the request ring",
                    record.kind
                ),
            });
        }
        parse_invoke(record.id, record.body).map(Some)
    }

    /// The request doorbell (fd 4, a blocking eventfd): readable when the
    /// daemon pushed a request. A poll loop reads its 8 bytes when it is
    /// readable, then calls [`RuntimeRing::try_next_invoke`] until `None`.
    pub fn request_bell(&self) -> BorrowedFd<'_> {
        self.request_bell.as_fd()
    }

    /// Invoke another function through the daemon (`detached`: fire and
    /// forget, answered once the call is accepted) and block until the
    /// daemon answers with the CALL_RESULT for this call. Only one call is
    /// outstanding at a time: the daemon refuses a second.
    pub fn call(
        &mut self,
        function: &str,
        detached: bool,
        payload: &[u8],
    ) -> Result<CallReply, RingError> {
        self.calls += 1;
        let call_id = self.calls;
        let meta = serde_json::json!({ "function": function, "async": detached }).to_string();
        let meta_len = u32::try_from(meta.len()).map_err(|_| RingError::TooLarge {
            len: meta.len(),
            limit: self.max_body(),
        })?;
        let mut body = Vec::with_capacity(4 + meta.len() + payload.len());
        body.extend_from_slice(&meta_len.to_le_bytes());
        body.extend_from_slice(meta.as_bytes());
        body.extend_from_slice(payload);
        if body.len() > self.max_body() {
            return Err(RingError::TooLarge {
                len: body.len(),
                limit: self.max_body(),
            });
        }
        self.send(kind::CALL, call_id, &body)?;
        let (id, body) = self.next_record(kind::CALL_RESULT)?;
        if id != call_id {
            return Err(RingError::Violation {
                reason: format!("CALL_RESULT for call {id} while waiting for call {call_id}"),
            });
        }
        parse_call_result(body)
    }

    /// Block until the daemon pushes a record; it must be of type `want`.
    fn next_record(&mut self, want: u16) -> Result<(u64, Vec<u8>), RingError> {
        let limit = self.requests.region().max_body();
        loop {
            if let Some(record) = self.requests.pop(&self.map, limit)? {
                if record.kind != want {
                    return Err(RingError::Violation {
                        reason: format!(
                            "unexpected message type {} on the request ring",
                            record.kind
                        ),
                    });
                }
                return Ok((record.id, record.body));
            }
            // Empty: sleep on the bell. A push after the check above rang
            // it, so this read returns; a push before it left the counter
            // set, so the read returns at once and we look again.
            let mut buf = [0u8; 8];
            loop {
                match nix::unistd::read(&self.request_bell, &mut buf) {
                    Ok(_) => break,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        return Err(RingError::WaitBell {
                            which: "request",
                            source: e.into(),
                        })
                    }
                }
            }
        }
    }
}

/// The daemon's answer to a CALL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallReply {
    /// The invocation the call became (0 if it was refused before one was
    /// made).
    pub invocation_id: u64,
    /// The callee's result bytes (empty for a detached call), or why the
    /// call failed.
    pub outcome: Result<Vec<u8>, CallError>,
}

/// Why a nested call failed, as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallError {
    /// The [`crate::protocol::ErrorKind`] name, e.g. `"NotFound"`.
    pub kind: String,
    pub message: String,
    /// The callee's own error type (e.g. `"ValueError"`) for a
    /// `FunctionError`.
    #[serde(default)]
    pub error_type: Option<String>,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.kind)?;
        if let Some(t) = &self.error_type {
            write!(f, "{t}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for CallError {}

#[derive(Deserialize)]
struct CallResultMeta {
    ok: bool,
    #[serde(default)]
    invocation_id: u64,
    #[serde(default)]
    error: Option<CallError>,
}

fn parse_call_result(body: Vec<u8>) -> Result<CallReply, RingError> {
    let (meta, result) = split_meta(body, "CALL_RESULT")?;
    let meta: CallResultMeta = serde_json::from_slice(&meta).map_err(|e| RingError::Violation {
        reason: format!("CALL_RESULT meta is not the expected JSON: {e}"),
    })?;
    let outcome = match (meta.ok, meta.error) {
        (true, _) => Ok(result),
        (false, Some(error)) => Err(error),
        (false, None) => {
            return Err(RingError::Violation {
                reason: "CALL_RESULT reports a failure without an error".into(),
            })
        }
    };
    Ok(CallReply {
        invocation_id: meta.invocation_id,
        outcome,
    })
}

/// Split `[u32 meta_len][meta][rest]` into meta and rest.
pub(super) fn split_meta(mut body: Vec<u8>, what: &str) -> Result<(Vec<u8>, Vec<u8>), RingError> {
    let bad = |reason: String| RingError::Violation { reason };
    let meta_len = body
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| {
            bad(format!(
                "{what} body of {} bytes has no meta length",
                body.len()
            ))
        })?;
    if meta_len > body.len() - 4 {
        return Err(bad(format!(
            "{what} meta length {meta_len} runs past its {}-byte body",
            body.len()
        )));
    }
    let meta = body[4..4 + meta_len].to_vec();
    body.drain(..4 + meta_len);
    Ok((meta, body))
}

fn parse_invoke(id: u64, body: Vec<u8>) -> Result<Invoke, RingError> {
    let (meta, payload) = split_meta(body, "invoke")?;
    let deadline_ms = if meta.is_empty() {
        None
    } else {
        serde_json::from_slice::<Meta>(&meta)
            .map_err(|e| RingError::Violation {
                reason: format!("invoke meta is not the expected JSON: {e}"),
            })?
            .deadline_ms
    };
    Ok(Invoke {
        id,
        deadline_ms,
        meta,
        payload,
    })
}
