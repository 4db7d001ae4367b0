//! The AWS Lambda Runtime API (2018-06-01), served inside a sandbox of the
//! `provided` runtime and bridged to its ring.
//!
//! The bridge runs in the runtime's process slot (pid 2 of the sandbox,
//! under seccomp) and listens on `crate::lambda::env::RUNTIME_API`
//! (`127.0.0.1:9001`) in the sandbox's own
//! network namespace; the function's `bootstrap`, its child, is any
//! program that speaks Lambda's Runtime API (awslambdaric, the
//! `lambda_runtime` crate, curl in a shell script). The runtime still
//! *pulls*: a `GET /next` blocks until the daemon pushes an INVOKE, and
//! each post becomes a ring record, so the daemon's queueing, deadlines,
//! tracing and typed failures are the same as for the other runtimes.
//!
//! - `http.rs`: the request reader over `httparse`, bounded, and the
//!   one-buffer encoding of answers;
//! - `state.rs`: which request is allowed when, and which ring record
//!   each accepted one becomes;
//! - `lambda.rs`: Lambda's headers for `/next` and its error JSON;
//! - `server.rs`: the single-threaded `mio` loop over the listener, the
//!   connections, the request doorbell and the bootstrap's pidfd.
//!
//! Everything the bootstrap sends is hostile: heads, header counts,
//! bodies and connections are bounded, malformed requests get `400` and a
//! closed connection, and nothing it sends can make the bridge panic. The
//! bridge ends when the bootstrap exits, with its exit status.

#![deny(unsafe_code)]

mod http;
mod lambda;
mod server;
mod state;

pub use lambda::Function;
pub use server::{serve, MAX_CONNECTIONS, MAX_HEAD, MAX_HEADERS};
pub use state::Violation;

/// The bridge's own failures (the bootstrap's misbehaviour is answered
/// over HTTP, never an error here).
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("polling the Runtime API's sockets and descriptors failed")]
    Poll(#[source] std::io::Error),
    #[error("the ring failed")]
    Ring(#[source] crate::ring::RingError),
    #[error("the daemon broke the ring contract")]
    Violation(#[from] Violation),
    #[error("reaping the bootstrap failed")]
    Wait(#[source] std::io::Error),
}
