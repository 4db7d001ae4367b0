//! The client↔daemon wire format (docs/protocol.md).
//!
//! Length-prefixed, versioned frames ([`frame`]) carry typed messages
//! ([`Request`], [`Response`]). Every frame holds the request id the client
//! chose, so one connection carries many requests in flight, answered in
//! any order.

#![deny(unsafe_code)]

mod binary;
mod codec;
mod error_kind;
mod frame;
mod messages;
mod stats;
mod trace;

pub use codec::{decode_request, decode_response, encode_request, encode_response, DecodeError};
pub use error_kind::ErrorKind;
pub use frame::{
    encode_frame, write_header, Frame, FrameDecoder, FrameError, FrameKind, HEADER_LEN, MAGIC,
    VERSION,
};
pub use messages::{
    AffinityMode, CallerContext, DeploySpec, ErrorBody, FunctionInfo, InvokeRequest,
    InvokeResponse, PretriggerAccepted, PretriggerRequest, Request, Response, DEFAULT_CONCURRENCY,
    DEFAULT_EPHEMERAL_STORAGE_MB, DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_MAX_QUEUE,
    DEFAULT_PRETRIGGER_TTL_SECS,
};
pub use stats::{DaemonStats, FunctionStats, Percentiles, PoolStats, StatsReport};
pub use trace::{CallEdge, PhaseStats, ProfileReport, SpanInfo, TraceReport};

/// Default largest invocation payload (and result), in bytes: 6 MiB.
pub const MAX_PAYLOAD: usize = 6 * 1024 * 1024;
/// Body bytes allowed on top of the payload limit, for names, metadata and
/// error bodies.
pub const BODY_HEADROOM: usize = 64 * 1024;
/// Longest function name.
pub const MAX_FUNCTION_NAME: usize = 64;
/// Longest affinity key, in bytes.
pub const MAX_AFFINITY_KEY: usize = 256;
/// Largest client context or Cognito identity, in bytes (Lambda's limit on
/// a client context).
pub const MAX_CALLER_CONTEXT: usize = 3583;

/// The frame body limit for a payload limit: the payload plus
/// [`BODY_HEADROOM`].
pub fn max_body_for(max_payload: usize) -> usize {
    max_payload.saturating_add(BODY_HEADROOM)
}

/// A function name is 1 to 64 characters of `[A-Za-z0-9_-]`.
pub fn validate_function_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("function name is empty".to_owned());
    }
    if name.len() > MAX_FUNCTION_NAME {
        return Err(format!(
            "function name is {} bytes, longer than {MAX_FUNCTION_NAME}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "function name has {bad:?}; only letters, digits, '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// A tiny deterministic generator for the property-style tests.
#[cfg(test)]
pub(crate) mod test_rng {
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(seed.max(1))
        }

        pub fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        pub fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names() {
        for ok in ["a", "hello", "Hello_World-2", &"x".repeat(64)] {
            assert_eq!(validate_function_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", &"x".repeat(65), "a b", "a/b", "../x", "é", "a.b", "a\0"] {
            assert!(validate_function_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn body_limit_has_headroom() {
        assert_eq!(max_body_for(MAX_PAYLOAD), 6 * 1024 * 1024 + 64 * 1024);
        assert_eq!(max_body_for(usize::MAX), usize::MAX);
    }
}
