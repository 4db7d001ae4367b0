//! What the daemon hands the sandbox init: the descriptor layout and the
//! configuration sent as JSON on the config pipe (fd 7).

use serde::{Deserialize, Serialize};

use super::{Limits, RuntimeKind};

/// Descriptor numbers in the sandbox. 3 to 6 stay open for the runtime;
/// 7 is the reaper's alone (see [`super::reaper`]); 8 and up are closed by
/// [`super::confine::confine`].
pub mod fds {
    /// The ring's memfd.
    pub const RING: i32 = 3;
    /// Eventfd the daemon rings when it pushed a request.
    pub const REQUEST_BELL: i32 = 4;
    /// Eventfd the runtime rings when it pushed a response.
    pub const RESPONSE_BELL: i32 = 5;
    /// The sandbox end of the control socket (`SOCK_SEQPACKET`): the
    /// assignment arrives here.
    pub const CONTROL: i32 = 6;
    /// The sandbox's output log (STATE/logs/INSTANCE/sandbox-ID.log),
    /// opened by the daemon: the reaper writes the runtime's capped stdout
    /// and stderr there; the runtime never holds it.
    pub const LOG: i32 = 7;
    /// The config pipe: one sync byte, then the JSON [`super::InitConfig`].
    pub const CONFIG: i32 = 8;
    /// The first descriptor `confine` closes.
    pub const FIRST_CLOSED: i32 = 8;
}

/// The largest configuration the init accepts.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Everything the init needs that is not a descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitConfig {
    pub id: u64,
    pub runtime: RuntimeKind,
    pub limits: Limits,
    pub hostname: String,
    /// The curated /etc, relative to the init's working directory
    /// (STATE/rootfs, entered by the child before its uid changed).
    pub etc_dir: String,
    /// Where the root tmpfs is mounted (relative, as above).
    pub newroot_dir: String,
    /// The runtime's files, bound at /var/runtime (relative, as above).
    pub runtime_dir: String,
    /// This sandbox's package mount points, bound at /var/task, /opt and
    /// /tmp (relative, as above; see `package.rs`).
    pub package_dir: String,
    /// The runtime's seccomp filter, compiled once per daemon start: raw
    /// `sock_filter` instructions, 8 bytes each.
    pub seccomp: Vec<u8>,
    /// The AWS region the runtime's environment names.
    pub region: String,
    /// `SPROUT_SANDBOX_STDERR=inherit`: the runtime's stderr stays the
    /// daemon's instead of going to the log (debugging).
    pub keep_stderr: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_as_json() {
        let config = InitConfig {
            id: 7,
            runtime: RuntimeKind::Python,
            limits: Limits::for_memory_mb(256),
            hostname: "sprout".into(),
            etc_dir: "etc".into(),
            newroot_dir: "newroot".into(),
            runtime_dir: "runtimes/python".into(),
            package_dir: "mounts/7".into(),
            region: "us-east-1".into(),
            seccomp: vec![1, 2, 3, 4, 5, 6, 7, 8],
            keep_stderr: false,
        };
        let json = serde_json::to_vec(&config).unwrap();
        assert_eq!(serde_json::from_slice::<InitConfig>(&json).unwrap(), config);
    }
}
