//! The typed messages a frame body carries.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ErrorKind;

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Deploy(DeploySpec),
    Invoke(InvokeRequest),
    List,
    Remove { name: String },
}

/// The daemon's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Deployed(FunctionInfo),
    Invoked(InvokeResponse),
    Functions(Vec<FunctionInfo>),
    Removed { name: String },
    Error(ErrorBody),
}

/// What to deploy. `code` is a path on the daemon's host, which copies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploySpec {
    pub name: String,
    /// `"python"` or `"native"`.
    pub runtime: String,
    /// e.g. `"app.handler"` for python; unused by native.
    #[serde(default)]
    pub handler: Option<String>,
    /// Absolute path to the code directory on the daemon's host.
    #[serde(with = "path_bytes")]
    pub code: PathBuf,
    #[serde(default)]
    pub memory_mb: Option<u32>,
    #[serde(default)]
    pub timeout_secs: Option<u32>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A deployed function version, as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionInfo {
    pub name: String,
    pub version: u64,
    pub runtime: String,
    #[serde(default)]
    pub handler: Option<String>,
    pub memory_mb: u32,
    pub timeout_secs: u32,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub code_bytes: u64,
    pub deployed_at_unix: u64,
}

/// Run `function` once with `payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeRequest {
    pub function: String,
    pub payload: Vec<u8>,
}

/// How one invocation ended. A function's own failure (and a timeout, OOM
/// or crash of its sandbox) is in `error`; `result` is then empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeResponse {
    pub invocation_id: u64,
    pub result: Vec<u8>,
    pub error: Option<ErrorBody>,
    /// True when the sandbox had not served this function before.
    pub cold: bool,
    /// Which sandbox ran it.
    pub sandbox: u64,
    /// Time in the handler, in microseconds.
    pub duration_us: u64,
    /// Time from the daemon reading the request to writing the response.
    pub total_us: u64,
}

/// A typed error: an Error frame's body, or [`InvokeResponse::error`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub kind: ErrorKind,
    pub message: String,
    /// The language's name for the error, e.g. `"ValueError"`.
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub stack_trace: Option<String>,
}

impl ErrorBody {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            kind,
            message: message.into(),
            error_type: None,
            stack_trace: None,
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.kind)?;
        if let Some(t) = &self.error_type {
            write!(f, "{t}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ErrorBody {}

/// Paths go over JSON as a string when they are UTF-8 and as an array of
/// bytes otherwise, so no Unix path is refused or mangled.
mod path_bytes {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        match path.to_str() {
            Some(text) => s.serialize_str(text),
            None => s.collect_seq(path.as_os_str().as_bytes()),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Ok(match Repr::deserialize(d)? {
            Repr::Text(text) => PathBuf::from(text),
            Repr::Bytes(bytes) => PathBuf::from(std::ffi::OsString::from_vec(bytes)),
        })
    }
}
