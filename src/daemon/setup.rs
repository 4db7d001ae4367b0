//! Start-up: state directory, leftovers of an earlier run, the listening
//! socket, signals.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use anyhow::{bail, Context};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::{Daemon, DaemonConfig, FnState};
use crate::pool::{Pool, Shape, Sizing};
use crate::reactor::Reactor;
use crate::registry::{Function, Registry};
use crate::sandbox::cgroup::{favor_dynamic_moves, Favor};
use crate::sandbox::{RuntimeKind, SandboxEnv};
use crate::scheduler::FunctionQueue;

/// Bring the daemon up: everything that can fail at start fails here, with
/// a message saying what to do.
pub(super) fn start(config: DaemonConfig) -> anyhow::Result<Daemon> {
    if !nix::unistd::geteuid().is_root() {
        bail!("sprout serve must run as root (it creates namespaces, cgroups and mounts)");
    }
    protect_daemon();
    fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("create state directory {}", config.state_dir.display()))?;
    let state_dir = fs::canonicalize(&config.state_dir)?;
    let lock = lock_state_dir(&state_dir)?;
    let instance = instance_name(&state_dir);
    tracing::info!(state_dir = %state_dir.display(), instance, "starting");

    let mut env = SandboxEnv::prepare(&state_dir, &instance).context("prepare sandboxes")?;
    env.set_region(&config.region);
    if config.favor_cgroup_moves {
        favor_cgroup_moves(&state_dir);
    }
    match env.cleanup_leftovers() {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "removed sandboxes left by an earlier run"),
        Err(err) => tracing::warn!(%err, "could not clean up an earlier run's sandboxes"),
    }
    let registry = Registry::open(&state_dir)?;
    // Blocked before any thread exists, so every thread inherits the mask
    // and the signals arrive only through the signalfd.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block().context("block SIGTERM and SIGINT")?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("create signalfd")?;

    let reactor = Reactor::new(config.event_loop).context("start the event loop")?;
    tracing::info!(backend = %reactor.backend(), "event loop ready");
    let listener = bind_socket(&config.socket)?;

    let max_message = config.max_payload + crate::protocol::BODY_HEADROOM;
    if !crate::sys::malloc::keep_buffers_up_to(max_message) {
        tracing::debug!("the allocator ignores mallopt: large payloads cost page faults");
    }
    let mut pool = Pool::new(
        env,
        max_message,
        Sizing::new(config.pool_min, config.pool_max),
    );
    for runtime in RuntimeKind::all() {
        pool.add_shape(Shape {
            runtime,
            memory_mb: Function::DEFAULT_MEMORY_MB,
        });
    }
    let trace_capacity = config.trace_capacity;
    let otlp = match &config.otlp_endpoint {
        Some(url) => Some(crate::trace::otlp::OtlpExporter::start(url)?),
        None => None,
    };
    let mut daemon = Daemon {
        config,
        reactor,
        registry,
        pool,
        functions: Default::default(),
        invocations: Default::default(),
        conns: Default::default(),
        counters: Default::default(),
        started: Instant::now(),
        last_tick: Instant::now(),
        listener: Rc::new(listener),
        signals: Rc::new(OwnedFd::from(signals)),
        next_conn: 1,
        next_invocation: 1,
        refill_after: Instant::now(),
        refill_wanted: true,
        refill_wanted_since: None,
        stopping: false,
        trace_ids: Default::default(),
        spans: crate::trace::SpanStore::new(trace_capacity),
        otlp,
        prewarmed: Default::default(),
        deadlines: Default::default(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let deployed: Vec<Function> = daemon.registry.list().cloned().collect();
    for function in deployed {
        if let Err(err) = daemon.serve_version(function.clone()) {
            tracing::warn!(function = %function.name, %err, "cannot serve deployed function");
        }
    }
    // The lock lives as long as the process: leak the guard on purpose.
    std::mem::forget(lock);
    Ok(daemon)
}

impl Daemon {
    /// Start serving a function version: mount its code read-only and give
    /// it a queue; the shape joins the pool targets.
    pub(super) fn serve_version(&mut self, function: Function) -> anyhow::Result<()> {
        let code_dir = self.registry.code_dir(&function);
        let opt_dir = self.registry.opt_dir(&function);
        let code = crate::sandbox::open_code_mount(&code_dir)
            .with_context(|| format!("mount code of {} read-only", function.name))?;
        let shape = Shape {
            runtime: function.runtime,
            memory_mb: function.memory_mb,
        };
        self.pool.add_shape(shape);
        self.refill_wanted = true;
        let key = (function.name.clone(), function.version);
        self.counters.entry(function.name.clone()).or_default();
        let queue = FunctionQueue::new(
            function.concurrency as usize,
            function.max_queue as usize,
            function.affinity_mode,
        );
        let library_dirs = crate::lambda::env::package_library_dirs(&code_dir, opt_dir.as_deref());
        let mut state = FnState {
            function: Rc::new(function),
            code,
            code_dir,
            spare_code: None,
            library_dirs,
            opt_dir,
            queue,
            retired: false,
        };
        // The first cold start finds its code's tree ready too.
        state.prepare_spare();
        self.functions.insert(key, state);
        Ok(())
    }
}

/// The daemon is never the OOM killer's victim (its sandboxes are, see
/// `sandbox::host`), and the operator learns which recommended host
/// settings are missing (docs/threat-model.md).
fn protect_daemon() {
    use crate::sandbox::host;
    let proc_root = Path::new("/proc");
    if let Err(err) = host::set_oom_score_adj(proc_root, "self", host::DAEMON_OOM_SCORE_ADJ) {
        tracing::warn!(
            %err,
            "could not set the daemon's oom_score_adj to -1000 (hint: lowering it needs \
             CAP_SYS_RESOURCE; sandboxes still get 1000, so the OOM killer takes them first)"
        );
    }
    for w in host::check_settings(&proc_root.join("sys")) {
        tracing::warn!(
            sysctl = w.sysctl,
            value = %w.value,
            recommended = w.recommended,
            "host setting weakens sandbox isolation: {} (see docs/threat-model.md)",
            w.why
        );
    }
}

/// One daemon per state directory: a second one gets a clear error.
fn lock_state_dir(state_dir: &Path) -> anyhow::Result<Flock<fs::File>> {
    let path = state_dir.join("daemon.lock");
    let file = fs::File::create(&path).with_context(|| format!("open {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        anyhow::anyhow!(
            "state directory {} is in use by another sprout daemon ({errno}); \
             give this one its own --state-dir",
            state_dir.display()
        )
    })
}

/// Make moving new sandboxes into their cgroups cheap (a warning if the
/// kernel cannot: sandboxes still start, each a few milliseconds later).
fn favor_cgroup_moves(state_dir: &Path) {
    match favor_dynamic_moves(&state_dir.join("cgroup2-scratch")) {
        Ok(Favor::AlreadySet) => tracing::debug!("the cgroup2 root favors dynamic moves already"),
        Ok(Favor::Set { options }) => tracing::info!(
            %options,
            "set favordynmods on the cgroup2 root (sandboxes move into their cgroups without an RCU grace period; --keep-cgroup-flags leaves it alone)"
        ),
        Err(err) => tracing::warn!(
            error = %format!("{:#}", anyhow::Error::from(err)),
            "could not set favordynmods on the cgroup2 root"
        ),
    }
}

/// Names a daemon's cgroups from its (canonical) state directory: stable,
/// so a restart finds what a crashed run left, and distinct between state
/// directories, so daemons side by side never touch each other's sandboxes.
pub fn instance_name(state_dir: &Path) -> String {
    // FNV-1a: stable across builds, unlike std's hasher.
    let hash = state_dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0x811c_9dc5_u32, |h, &b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    format!("sprout-{hash:08x}")
}

/// Bind the client socket. Mode 0600: only root (and the daemon's own uid,
/// checked again per connection with SO_PEERCRED) may connect.
fn bind_socket(path: &Path) -> anyhow::Result<OwnedFd> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("create socket directory {}", parent.display()))?;
    }
    if path.exists() {
        if socket_is_served(path) {
            bail!(
                "{} is already served by a running daemon; stop it or pick another --socket",
                path.display()
            );
        }
        fs::remove_file(path).with_context(|| format!("remove stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("bind socket {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(OwnedFd::from(listener))
}

/// Whether a live daemon listens on `path`. A daemon that was just killed
/// can leave its listening socket alive for a few milliseconds (its
/// io_uring still references it while the kernel tears the ring down), so
/// only a listener that keeps accepting for a second counts as live.
fn socket_is_served(path: &Path) -> bool {
    (0..20).all(|_| {
        let served = UnixStream::connect(path).is_ok();
        if served {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        served
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_stable_and_distinct() {
        let a = instance_name(Path::new("/var/lib/sprout"));
        assert_eq!(a, instance_name(Path::new("/var/lib/sprout")));
        assert_ne!(a, instance_name(Path::new("/tmp/other")));
        assert!(a.starts_with("sprout-") && a.len() == 15);
    }

    #[test]
    fn second_lock_on_a_state_dir_fails() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock_state_dir(dir.path()).unwrap();
        let err = lock_state_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
    }
}
