//! The client↔daemon wire format (docs/protocol.md).

mod error_kind;

pub use error_kind::ErrorKind;
