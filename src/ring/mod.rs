//! The daemon↔runtime shared-memory rings.
//!
//! One sealed memfd per sandbox holds a header page, a request ring
//! (daemon → runtime) and a response ring (runtime → daemon); two eventfds
//! are the doorbells. The byte layout is in [`layout`] and, for runtime
//! authors in any language, in runtimes/README.md.
//!
//! The daemon ([`HostRing`]) treats every byte it reads from a ring as
//! hostile: indices are loaded once and bounded, lengths are checked before
//! allocation, records are copied out before they are validated, and any
//! inconsistency is a [`RingError::Violation`] (the caller kills the
//! sandbox and reports `RuntimeCrash`). The runtime side is [`RuntimeRing`].

#![deny(unsafe_code)]

mod assignment;
mod error_body;
#[doc(hidden)]
pub mod harness;
mod host;
pub mod layout;
mod runtime;
mod spsc;

#[cfg(test)]
mod call_tests;
#[cfg(test)]
mod python_lambda_tests;
#[cfg(test)]
mod python_tests;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::BorrowedFd;

pub use assignment::{
    recv_assignment, send_assignment, Assignment, AssignmentError, MAX_ASSIGNMENT,
};
pub(crate) use error_body::cut;
pub use error_body::{function_error_body, parse_function_error, INVALID_ERROR};
pub use host::{invoke_meta, HostRing, RuntimeEnd, RuntimeMessage, MAX_CALL_NAME};
pub use runtime::{
    CallError, CallReply, Invoke, RuntimeRing, CONTROL_FD, REQUEST_BELL_FD, RESPONSE_BELL_FD,
    RING_FD,
};

/// Errors of ring creation and use. `Violation` means the peer broke the
/// ring protocol; every other variant is an operation of this side failing.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("memfd_create or sealing for the ring failed")]
    CreateMemfd(#[source] io::Error),
    #[error("mapping the {len}-byte ring memfd failed")]
    Map {
        len: usize,
        #[source]
        source: io::Error,
    },
    #[error("eventfd for the {which} doorbell failed")]
    CreateBell {
        which: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("duplicating a doorbell for the runtime failed")]
    DupBell(#[source] io::Error),
    #[error("ringing the {which} doorbell failed")]
    RingBell {
        which: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("waiting on the {which} doorbell failed")]
    WaitBell {
        which: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("inherited ring fd {fd} is not open (hint: a runtime expects fds 3, 4, 5, see runtimes/README.md)")]
    Inherit {
        fd: i32,
        #[source]
        source: io::Error,
    },
    #[error("the ring header is invalid: {reason}")]
    BadHeader { reason: String },
    #[error("a {len}-byte message is over the ring's {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error("the ring is full: {needed} bytes needed, {free} free")]
    Full { needed: usize, free: usize },
    #[error("ring protocol violation: {reason}")]
    Violation { reason: String },
}

/// Add 1 to a doorbell eventfd.
fn ring_bell(bell: BorrowedFd<'_>, which: &'static str) -> Result<(), RingError> {
    loop {
        match nix::unistd::write(bell, &1u64.to_ne_bytes()) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            // The counter is at its maximum: the peer has a wake-up pending
            // already, which is all a doorbell promises.
            Err(nix::errno::Errno::EAGAIN) => return Ok(()),
            Err(e) => {
                return Err(RingError::RingBell {
                    which,
                    source: e.into(),
                })
            }
        }
    }
}
