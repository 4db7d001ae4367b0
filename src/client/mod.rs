//! The client library: blocking calls to the daemon over its Unix socket.
//!
//! One [`Client`] is one connection. It is `Send + Sync`: share it across
//! threads (`&Client`, `Arc<Client>`) and their calls are pipelined over
//! the connection, each answered by request id in whatever order the
//! daemon finishes them.

#![deny(unsafe_code)]

mod connection;
mod error;

use std::path::{Path, PathBuf};

pub use error::{ClientError, ProtocolError};

use crate::protocol::{
    CallerContext, DeploySpec, FunctionInfo, InvokeRequest, InvokeResponse, PretriggerAccepted,
    PretriggerRequest, ProfileReport, Request, Response, StatsReport, TraceReport, MAX_PAYLOAD,
};
use connection::Connection;

/// The socket used when none is given: `$SPROUT_SOCKET`, else
/// `/run/sprout/sprout.sock`.
pub fn default_socket() -> PathBuf {
    std::env::var_os("SPROUT_SOCKET")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::daemon::DaemonConfig::DEFAULT_SOCKET))
}

/// How to run one invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvokeOptions {
    /// Send it to the sandbox that last served this key (see the daemon's
    /// affinity routing); it also reaches the handler.
    pub affinity: Option<String>,
    /// A W3C `traceparent`: the invocation's call tree joins that trace.
    pub traceparent: Option<String>,
    /// Lambda's client context and Cognito identity for the handler.
    pub caller: CallerContext,
}

/// A connection to the daemon.
pub struct Client {
    conn: Connection,
    path: PathBuf,
    max_payload: usize,
}

impl Client {
    /// Connect with the default payload limit ([`MAX_PAYLOAD`]).
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        Self::connect_with_max_payload(path, MAX_PAYLOAD)
    }

    /// Connect, refusing payloads over `max_payload` bytes before sending
    /// (match the daemon's `--max-payload`). Responses up to the same limit
    /// are accepted.
    pub fn connect_with_max_payload(
        path: impl AsRef<Path>,
        max_payload: usize,
    ) -> Result<Client, ClientError> {
        let path = path.as_ref();
        Ok(Client {
            conn: Connection::open(path, max_payload)?,
            path: path.to_owned(),
            max_payload,
        })
    }

    /// The socket this client is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Deploy a new version of a function.
    pub fn deploy(&self, spec: &DeploySpec) -> Result<FunctionInfo, ClientError> {
        match self.conn.call(&Request::Deploy(spec.clone()))? {
            Response::Deployed(info) => Ok(info),
            other => Err(unexpected("Deploy", other)),
        }
    }

    /// Invoke a function. The function's own failure (and a timeout, OOM or
    /// crash) is `Ok` with [`InvokeResponse::error`] set.
    pub fn invoke(&self, function: &str, payload: &[u8]) -> Result<InvokeResponse, ClientError> {
        self.invoke_with(function, payload, &InvokeOptions::default())
    }

    /// [`Client::invoke`] with options (an affinity key).
    pub fn invoke_with(
        &self,
        function: &str,
        payload: &[u8],
        options: &InvokeOptions,
    ) -> Result<InvokeResponse, ClientError> {
        if payload.len() > self.max_payload {
            return Err(ClientError::PayloadTooLarge {
                len: payload.len(),
                limit: self.max_payload,
            });
        }
        let req = Request::Invoke(InvokeRequest {
            function: function.to_owned(),
            payload: payload.to_vec(),
            affinity: options.affinity.clone(),
            traceparent: options.traceparent.clone(),
            caller: options.caller.clone(),
        });
        match self.conn.call(&req)? {
            Response::Invoked(resp) => Ok(resp),
            other => Err(unexpected("Invoke", other)),
        }
    }

    /// Counters of one function (`Some(name)`) or of all, and of the
    /// daemon.
    pub fn stats(&self, name: Option<&str>) -> Result<StatsReport, ClientError> {
        let req = Request::Stats {
            name: name.map(str::to_owned),
        };
        match self.conn.call(&req)? {
            Response::Stats(report) => Ok(report),
            other => Err(unexpected("Stats", other)),
        }
    }

    /// Tell the daemon to expect `count` invocations of `name` soon: it
    /// prepares up to that many sandboxes (bounded by the function's
    /// concurrency) and keeps them from idle reaping for `ttl_secs` (the
    /// daemon's default when `None`). Returns at once; `prepared` in
    /// [`Client::stats`] shows when they are ready.
    pub fn pretrigger(
        &self,
        name: &str,
        count: u32,
        ttl_secs: Option<u32>,
    ) -> Result<PretriggerAccepted, ClientError> {
        let req = Request::Pretrigger(PretriggerRequest {
            name: name.to_owned(),
            count,
            ttl_secs,
        });
        match self.conn.call(&req)? {
            Response::Pretriggered(accepted) => Ok(accepted),
            other => Err(unexpected("Pretrigger", other)),
        }
    }

    /// Every deployed function (latest version of each).
    /// The recorded call tree of the trace invocation `invocation_id` is
    /// in (any invocation of the tree will do).
    pub fn trace(&self, invocation_id: u64) -> Result<TraceReport, ClientError> {
        match self.conn.call(&Request::Trace { invocation_id })? {
            Response::Trace(report) => Ok(report),
            other => Err(unexpected("Trace", other)),
        }
    }

    /// A function's profile over its recorded spans.
    pub fn profile(&self, name: &str) -> Result<ProfileReport, ClientError> {
        let req = Request::Profile {
            name: name.to_owned(),
        };
        match self.conn.call(&req)? {
            Response::Profile(report) => Ok(report),
            other => Err(unexpected("Profile", other)),
        }
    }

    pub fn list(&self) -> Result<Vec<FunctionInfo>, ClientError> {
        match self.conn.call(&Request::List)? {
            Response::Functions(list) => Ok(list),
            other => Err(unexpected("List", other)),
        }
    }

    /// Remove a function and all its versions.
    pub fn remove(&self, name: &str) -> Result<(), ClientError> {
        let req = Request::Remove {
            name: name.to_owned(),
        };
        match self.conn.call(&req)? {
            Response::Removed { .. } => Ok(()),
            other => Err(unexpected("Remove", other)),
        }
    }
}

fn unexpected(sent: &'static str, got: Response) -> ClientError {
    let got = match got {
        Response::Error(body) => return ClientError::Remote(body),
        Response::Deployed(_) => "Deployed",
        Response::Invoked(_) => "Invoked",
        Response::Functions(_) => "Functions",
        Response::Removed { .. } => "Removed",
        Response::Stats(_) => "StatsReport",
        Response::Pretriggered(_) => "Pretriggered",
        Response::Trace(_) => "TraceReport",
        Response::Profile(_) => "ProfileReport",
    };
    ClientError::Protocol(ProtocolError::UnexpectedResponse { sent, got })
}

#[cfg(test)]
mod tests;
