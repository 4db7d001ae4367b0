//! The typed error every failed request ends in.

use serde::{Deserialize, Serialize};

/// Why a request failed. Stable on the wire (the `u16` code) and in JSON
/// (the variant name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u16)]
pub enum ErrorKind {
    /// The handler raised or returned an error (also: the function's init
    /// code failed).
    FunctionError = 1,
    /// The handler ran past its timeout and its sandbox was killed.
    Timeout = 2,
    /// The sandbox hit its memory limit (read from the cgroup).
    OutOfMemory = 3,
    /// The runtime crashed, exited or broke the ring protocol.
    RuntimeCrash = 4,
    /// The function's queue is full.
    Throttled = 5,
    /// A payload or frame is over the configured limit.
    TooLarge = 6,
    /// No function of that name is deployed.
    NotFound = 7,
    /// The request is malformed or names invalid options.
    BadRequest = 8,
    /// The sandbox was killed for a seccomp policy violation.
    PolicyViolation = 9,
    /// The peer speaks a protocol version this side does not.
    UnsupportedVersion = 10,
    /// The daemon failed for a reason of its own (see its log).
    Internal = 11,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::FunctionError,
        ErrorKind::Timeout,
        ErrorKind::OutOfMemory,
        ErrorKind::RuntimeCrash,
        ErrorKind::Throttled,
        ErrorKind::TooLarge,
        ErrorKind::NotFound,
        ErrorKind::BadRequest,
        ErrorKind::PolicyViolation,
        ErrorKind::UnsupportedVersion,
        ErrorKind::Internal,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<ErrorKind> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::FunctionError => "FunctionError",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::OutOfMemory => "OutOfMemory",
            ErrorKind::RuntimeCrash => "RuntimeCrash",
            ErrorKind::Throttled => "Throttled",
            ErrorKind::TooLarge => "TooLarge",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::BadRequest => "BadRequest",
            ErrorKind::PolicyViolation => "PolicyViolation",
            ErrorKind::UnsupportedVersion => "UnsupportedVersion",
            ErrorKind::Internal => "Internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(ErrorKind::from_code(0), None);
        assert_eq!(ErrorKind::from_code(999), None);
    }
}
