use std::path::PathBuf;

use crate::reactor::Backend;

/// Everything `sprout serve` can be told.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The Unix socket clients connect to.
    pub socket: PathBuf,
    /// Registry, function code and runtime files live here.
    pub state_dir: PathBuf,
    /// Force an event-loop backend; `None` probes io_uring and falls back
    /// to epoll.
    pub event_loop: Option<Backend>,
    /// Largest invocation payload (and result) accepted, in bytes.
    pub max_payload: usize,
    /// Idle pre-forked sandboxes kept per shape.
    pub pool_size: usize,
}

impl DaemonConfig {
    pub const DEFAULT_SOCKET: &'static str = "/run/sprout/sprout.sock";
    pub const DEFAULT_STATE_DIR: &'static str = "/var/lib/sprout";
    pub const DEFAULT_MAX_PAYLOAD: usize = 6 * 1024 * 1024;
    pub const DEFAULT_POOL_SIZE: usize = 2;
}
