//! The typed messages a frame body carries.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ErrorKind, StatsReport};

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Deploy(DeploySpec),
    Invoke(InvokeRequest),
    List,
    Remove {
        name: String,
    },
    /// Counters of one function (`Some`) or of all of them.
    Stats {
        name: Option<String>,
    },
    Pretrigger(PretriggerRequest),
    /// The whole recorded call tree of the trace this invocation is in.
    Trace {
        invocation_id: u64,
    },
    /// A function's profile over its recorded spans.
    Profile {
        name: String,
    },
}

/// The daemon's answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Deployed(FunctionInfo),
    Invoked(InvokeResponse),
    Functions(Vec<FunctionInfo>),
    Removed { name: String },
    Stats(StatsReport),
    Pretriggered(PretriggerAccepted),
    Trace(super::TraceReport),
    Profile(super::ProfileReport),
    Error(ErrorBody),
}

/// What to deploy. `code` and `layers` are paths on the daemon's host,
/// which unpacks them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploySpec {
    pub name: String,
    /// `"python"`, `"native"`, `"provided"` or a Lambda name of one (`"python3.11"`, `"provided.al2023"`).
    pub runtime: String,
    /// e.g. `"app.handler"` for python; unused by native.
    #[serde(default)]
    pub handler: Option<String>,
    /// Absolute path, on the daemon's host, to the code: a directory or a
    /// zip file (Lambda's deployment package).
    #[serde(with = "path_bytes")]
    pub code: PathBuf,
    /// Absolute paths of layers (directories or zip files), at most 5,
    /// merged in order into the sandbox's `/opt`: a later layer's file
    /// wins.
    #[serde(default, with = "path_list")]
    pub layers: Vec<PathBuf>,
    #[serde(default)]
    pub memory_mb: Option<u32>,
    #[serde(default)]
    pub timeout_secs: Option<u32>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Most sandboxes at once (null: the default, 10).
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Most invocations waiting for a sandbox (null: the default, 100).
    #[serde(default)]
    pub max_queue: Option<u32>,
    /// Seconds a sandbox may stay idle before it is destroyed (null: 300).
    #[serde(default)]
    pub idle_timeout_secs: Option<u32>,
    /// How affinity keys share sandboxes (null: shared).
    #[serde(default)]
    pub affinity_mode: Option<AffinityMode>,
    /// On a cold start, start sandboxes for the functions this one called
    /// in most of its recent invocations (null: off).
    #[serde(default)]
    pub prewarm_callees: Option<bool>,
    /// Size of the sandbox's `/tmp` in MB, 512 to 10240 (null: 512).
    #[serde(default)]
    pub ephemeral_storage_mb: Option<u32>,
}

/// How invocations with affinity keys use a function's sandboxes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AffinityMode {
    /// A key goes to the sandbox that last served it; any sandbox may serve
    /// any key, and invocations without a key.
    #[default]
    Shared,
    /// A sandbox serves the first key it served and no other, nor
    /// invocations without a key (per-tenant isolation).
    Strict,
}

impl AffinityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AffinityMode::Shared => "shared",
            AffinityMode::Strict => "strict",
        }
    }
}

impl std::fmt::Display for AffinityMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AffinityMode {
    type Err = String;

    fn from_str(s: &str) -> Result<AffinityMode, String> {
        match s {
            "shared" => Ok(AffinityMode::Shared),
            "strict" => Ok(AffinityMode::Strict),
            _ => Err(format!("{s:?} is not an affinity mode (shared or strict)")),
        }
    }
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
    /// Bytes of each layer, unpacked, in order.
    #[serde(default)]
    pub layer_bytes: Vec<u64>,
    /// Size of the sandbox's `/tmp` in MB.
    #[serde(default = "default_ephemeral_storage")]
    pub ephemeral_storage_mb: u32,
    pub deployed_at_unix: u64,
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    #[serde(default = "default_max_queue")]
    pub max_queue: u32,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u32,
    #[serde(default)]
    pub affinity_mode: AffinityMode,
    /// Start sandboxes for the usual callees when this function starts
    /// cold (`--prewarm-callees`).
    #[serde(default)]
    pub prewarm_callees: bool,
}

/// Defaults of the scheduling options, shared by the registry and by
/// decoding a `FunctionInfo` from a daemon that does not send them.
pub const DEFAULT_CONCURRENCY: u32 = 10;
pub const DEFAULT_MAX_QUEUE: u32 = 100;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u32 = 300;
/// Lambda's default `/tmp` size.
pub const DEFAULT_EPHEMERAL_STORAGE_MB: u32 = 512;

fn default_concurrency() -> u32 {
    DEFAULT_CONCURRENCY
}

fn default_max_queue() -> u32 {
    DEFAULT_MAX_QUEUE
}

fn default_idle_timeout() -> u32 {
    DEFAULT_IDLE_TIMEOUT_SECS
}

fn default_ephemeral_storage() -> u32 {
    DEFAULT_EPHEMERAL_STORAGE_MB
}

/// Run `function` once with `payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeRequest {
    pub function: String,
    pub payload: Vec<u8>,
    /// Route to the sandbox that last served this key (1 to
    /// [`super::MAX_AFFINITY_KEY`] bytes).
    pub affinity: Option<String>,
    /// A W3C `traceparent` (`00-<trace id>-<span id>-<flags>`): the call
    /// tree joins that trace, under that span.
    pub traceparent: Option<String>,
    /// Lambda's client context and Cognito identity, handed to the
    /// runtime as they are.
    pub caller: CallerContext,
}

/// What Lambda's Invoke API carries beside the payload for the handler:
/// each a JSON object of at most [`super::MAX_CALLER_CONTEXT`] bytes, which
/// a runtime passes on (`Lambda-Runtime-Client-Context`,
/// `Lambda-Runtime-Cognito-Identity`; python `context.client_context`,
/// `context.identity`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerContext {
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
}

impl CallerContext {
    pub fn is_empty(&self) -> bool {
        self.client_context.is_none() && self.cognito_identity.is_none()
    }
}

/// Prepare `count` sandboxes of `name` ahead of the invocations, kept
/// from idle reaping for `ttl_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PretriggerRequest {
    pub name: String,
    pub count: u32,
    /// null: [`DEFAULT_PRETRIGGER_TTL_SECS`].
    #[serde(default)]
    pub ttl_secs: Option<u32>,
}

pub const DEFAULT_PRETRIGGER_TTL_SECS: u32 = 60;

/// What the daemon set out to prepare: `count` is the request bounded by
/// the function's concurrency; `starting` of them are new sandboxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PretriggerAccepted {
    pub name: String,
    pub version: u64,
    pub count: u32,
    pub starting: u32,
    pub ttl_secs: u32,
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
    /// The invocation carried an affinity key and went to the sandbox that
    /// had served that key before.
    pub affinity_hit: bool,
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

/// A list of paths, each as [`path_bytes`] writes one.
mod path_list {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct OnePath(#[serde(with = "super::path_bytes")] PathBuf);

    pub fn serialize<S: Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(paths.iter().map(|p| OnePath(p.clone())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
        let paths = Vec::<OnePath>::deserialize(d)?;
        Ok(paths.into_iter().map(|OnePath(p)| p).collect())
    }
}
