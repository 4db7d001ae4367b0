//! What a client call can fail with.

use std::path::PathBuf;

use thiserror::Error;

use crate::protocol::{DecodeError, ErrorBody, ErrorKind, FrameError};

/// A failed client call. A function's own failure is not one of these: it
/// comes back in [`crate::protocol::InvokeResponse::error`].
#[derive(Debug, Error)]
pub enum ClientError {
    /// The daemon's socket could not be reached.
    #[error("connect to {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("socket i/o: {0}")]
    Io(#[source] std::io::Error),
    /// The daemon sent something this client cannot make sense of.
    #[error("protocol violation: {0}")]
    Protocol(#[source] ProtocolError),
    /// The daemon answered with an Error frame.
    #[error("{0}")]
    Remote(ErrorBody),
    /// The payload is over the client's limit; nothing was sent.
    #[error("TooLarge: payload of {len} bytes is over the {limit} byte limit")]
    PayloadTooLarge { len: usize, limit: usize },
    /// The daemon closed the connection while the request was in flight.
    #[error("the daemon closed the connection with the request in flight")]
    Disconnected,
}

impl ClientError {
    /// The typed error kind, for errors that have one (a daemon's answer,
    /// or a payload refused before sending).
    pub fn error_kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Remote(body) => Some(body.kind),
            ClientError::PayloadTooLarge { .. } => Some(ErrorKind::TooLarge),
            _ => None,
        }
    }
}

/// How the daemon broke the protocol.
#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error("bad frame: {0}")]
    Frame(#[source] FrameError),
    #[error("bad response body: {0}")]
    Decode(#[source] DecodeError),
    #[error("daemon answered a {sent} request with {got}")]
    UnexpectedResponse {
        sent: &'static str,
        got: &'static str,
    },
}
