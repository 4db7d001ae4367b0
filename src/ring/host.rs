//! The daemon's side of a sandbox's ring: it produces INVOKE records and
//! consumes (and distrusts) everything the runtime pushes back.

use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::layout::{self, kind, HEADER_SIZE};
use super::spsc::{Consumer, Producer, RingRegion};
use super::{ring_bell, RingError};
use crate::sys::shm::{sealed_memfd, SharedMapping};

/// What goes into the sandbox, to become its fds 3, 4 and 5.
#[derive(Debug)]
pub struct RuntimeEnd {
    /// The ring memfd (sealed: it cannot be resized).
    pub memfd: OwnedFd,
    /// Eventfd the daemon writes after pushing a request; the runtime
    /// blocks reading it.
    pub request_bell: OwnedFd,
    /// Eventfd the runtime writes after pushing a response (non-blocking
    /// file description: the daemon's reactor reads it).
    pub response_bell: OwnedFd,
}

/// One message from a runtime, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeMessage {
    Ready,
    InitOk,
    InitError {
        body: Vec<u8>,
    },
    Result {
        id: u64,
        body: Vec<u8>,
    },
    Error {
        id: u64,
        body: Vec<u8>,
    },
    /// The running handler invokes `function` (`detached`: fire and
    /// forget); `id` is the runtime's call number, echoed in CALL_RESULT.
    Call {
        id: u64,
        function: String,
        detached: bool,
        payload: Vec<u8>,
    },
}

/// The longest function name a CALL may carry.
pub const MAX_CALL_NAME: usize = 256;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CallMeta {
    function: String,
    #[serde(default, rename = "async")]
    detached: bool,
}

/// The daemon's end of one ring.
#[derive(Debug)]
pub struct HostRing {
    map: SharedMapping,
    requests: Producer,
    responses: Consumer,
    request_bell: OwnedFd,
    response_bell: Rc<OwnedFd>,
}

impl HostRing {
    /// Create the memfd (header page plus two rings of
    /// [`layout::capacity_for`]`(max_message)` bytes each), map it, write the
    /// header, and make the two doorbells.
    pub fn create(max_message: usize) -> Result<(HostRing, RuntimeEnd), RingError> {
        let capacity = layout::capacity_for(max_message).ok_or(RingError::TooLarge {
            len: max_message,
            limit: u32::MAX as usize,
        })?;
        if capacity - layout::RECORD_HEADER > u32::MAX as usize {
            return Err(RingError::TooLarge {
                len: max_message,
                limit: u32::MAX as usize - layout::RECORD_HEADER - layout::SLACK,
            });
        }
        let size = HEADER_SIZE + 2 * capacity;
        let memfd = sealed_memfd(c"sprout-ring", size).map_err(RingError::CreateMemfd)?;
        let map = SharedMapping::map(memfd.as_fd(), size)
            .map_err(|source| RingError::Map { len: size, source })?;
        map.copy_in(0, &layout::encode_fixed(capacity as u64, capacity as u64))
            .map_err(|e| RingError::Violation {
                reason: e.to_string(),
            })?;
        let request = RingRegion {
            data: HEADER_SIZE,
            capacity,
            head: layout::OFF_REQUEST_HEAD,
            tail: layout::OFF_REQUEST_TAIL,
        };
        let response = RingRegion {
            data: HEADER_SIZE + capacity,
            capacity,
            head: layout::OFF_RESPONSE_HEAD,
            tail: layout::OFF_RESPONSE_TAIL,
        };
        let bell = |which, flags| {
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | flags)
                .map(OwnedFd::from)
                .map_err(|e| RingError::CreateBell {
                    which,
                    source: e.into(),
                })
        };
        let request_bell = bell("request", EfdFlags::empty())?;
        let response_bell = bell("response", EfdFlags::EFD_NONBLOCK)?;
        let end = RuntimeEnd {
            memfd,
            request_bell: request_bell.try_clone().map_err(RingError::DupBell)?,
            response_bell: response_bell.try_clone().map_err(RingError::DupBell)?,
        };
        let host = HostRing {
            map,
            requests: Producer::new(request, 0),
            responses: Consumer::new(response, 0),
            request_bell,
            response_bell: Rc::new(response_bell),
        };
        Ok((host, end))
    }

    /// Push an INVOKE (`[u32 meta_len][meta][payload]`) and ring the
    /// request bell. `Full` only if the runtime has not consumed earlier
    /// requests (the daemon sends one at a time, so that is a bug or a
    /// stuck runtime); `TooLarge` if meta and payload cannot fit the ring.
    pub fn send_invoke(&mut self, id: u64, meta: &[u8], payload: &[u8]) -> Result<(), RingError> {
        self.send_with_meta(kind::INVOKE, id, meta, payload)
    }

    /// Push a CALL_RESULT (`[u32 meta_len][meta][result]`) for the
    /// runtime's call `call_id` and ring the request bell.
    pub fn send_call_result(
        &mut self,
        call_id: u64,
        meta: &[u8],
        result: &[u8],
    ) -> Result<(), RingError> {
        self.send_with_meta(kind::CALL_RESULT, call_id, meta, result)
    }

    /// Push a `[u32 meta_len][meta][body]` record and ring the request bell.
    fn send_with_meta(
        &mut self,
        kind: u16,
        id: u64,
        meta: &[u8],
        body: &[u8],
    ) -> Result<(), RingError> {
        let meta_len = u32::try_from(meta.len()).map_err(|_| RingError::TooLarge {
            len: meta.len(),
            limit: self.requests.region().max_body(),
        })?;
        self.requests
            .push(&self.map, kind, id, &[&meta_len.to_le_bytes(), meta, body])?;
        ring_bell(self.request_bell.as_fd(), "request")
    }

    /// Pop one message from the response ring, if any. Any inconsistency
    /// (indices, lengths, unknown type) is a `Violation`: kill the sandbox.
    pub fn recv(&mut self) -> Result<Option<RuntimeMessage>, RingError> {
        let limit = self.responses.region().max_body();
        let Some(record) = self.responses.pop(&self.map, limit)? else {
            return Ok(None);
        };
        let message = match record.kind {
            kind::READY => RuntimeMessage::Ready,
            kind::INIT_OK => RuntimeMessage::InitOk,
            kind::INIT_ERROR => RuntimeMessage::InitError { body: record.body },
            kind::RESULT => RuntimeMessage::Result {
                id: record.id,
                body: record.body,
            },
            kind::ERROR => RuntimeMessage::Error {
                id: record.id,
                body: record.body,
            },
            kind::CALL => parse_call(record.id, record.body)?,
            other => {
                return Err(RingError::Violation {
                    reason: format!("unknown message type {other} on the response ring"),
                })
            }
        };
        Ok(Some(message))
    }

    /// The response doorbell (non-blocking eventfd). The reactor waits for
    /// it to become readable, reads its 8 bytes, then calls [`recv`] until
    /// it returns `None`.
    ///
    /// [`recv`]: HostRing::recv
    pub fn response_bell(&self) -> Rc<OwnedFd> {
        Rc::clone(&self.response_bell)
    }

    /// The largest INVOKE body (4 + meta + payload) the request ring takes.
    pub fn max_request_body(&self) -> usize {
        self.requests.region().max_body()
    }

    /// The largest body the runtime can push back.
    pub fn max_response_body(&self) -> usize {
        self.responses.region().max_body()
    }
}

/// The minimal INVOKE meta JSON: `{"id": id, "deadline_ms": deadline_ms}`.
/// Callers with more fields (trace, affinity) build their own object;
/// runtimes ignore keys they do not know.
pub fn invoke_meta(id: u64, deadline_ms: u64) -> Vec<u8> {
    format!(r#"{{"id":{id},"deadline_ms":{deadline_ms}}}"#).into_bytes()
}

/// Validate a CALL body: `[u32 meta_len][meta JSON][payload]`, the meta
/// exactly `{"function": name, "async": bool}` with a name of 1 to
/// [`MAX_CALL_NAME`] bytes.
fn parse_call(id: u64, body: Vec<u8>) -> Result<RuntimeMessage, RingError> {
    let bad = |reason: String| RingError::Violation { reason };
    let (meta, payload) = super::runtime::split_meta(body, "CALL")?;
    let meta: CallMeta = serde_json::from_slice(&meta)
        .map_err(|e| bad(format!("CALL meta is not the expected JSON: {e}")))?;
    if meta.function.is_empty() || meta.function.len() > MAX_CALL_NAME {
        return Err(bad(format!(
            "CALL names a function of {} bytes (1 to {MAX_CALL_NAME})",
            meta.function.len()
        )));
    }
    Ok(RuntimeMessage::Call {
        id,
        function: meta.function,
        detached: meta.detached,
        payload,
    })
}
