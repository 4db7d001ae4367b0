//! The daemon: one event loop that owns connections, functions, sandboxes
//! and invocations.

mod config;

pub use config::DaemonConfig;

/// Run the daemon in the foreground until SIGTERM or SIGINT.
pub fn run(config: DaemonConfig) -> anyhow::Result<()> {
    let _ = config;
    anyhow::bail!("daemon not built yet")
}
