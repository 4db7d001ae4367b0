//! The daemon: one event loop that owns connections, functions, sandboxes
//! and invocations.
//!
//! Everything runs on one thread: the reactor (io_uring, or epoll) reports
//! completed operations, each tagged with the [`tokens::Event`] it belongs
//! to, and the handlers below move connections, invocations and sandboxes
//! through their states. Nothing on this thread blocks, except sandbox
//! teardown at shutdown.

#![deny(unsafe_code)]

mod calls;
mod config;
mod conn;
mod invoke;
mod log_limit;
mod pretrigger;
mod prewarm;
mod reaper;
mod sandboxes;
mod setup;
mod stats;
mod tokens;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use config::DaemonConfig;
pub use setup::instance_name;

use crate::pool::{FunctionKey, Pool};
use crate::reactor::{Completion, Op, Reactor};
use crate::registry::{Function, Registry};
use crate::scheduler::{FunctionQueue, InvocationId};
use conn::Conn;
use invoke::Invocation;
use stats::FnCounters;
use tokens::Event;

/// Run the daemon in the foreground until SIGTERM or SIGINT.
pub fn run(config: DaemonConfig) -> anyhow::Result<()> {
    let mut daemon = setup::start(config)?;
    let result = daemon.serve();
    daemon.shutdown();
    result
}

/// Longest a pool refill waits for cold starts in flight to finish.
const REFILL_PATIENCE: Duration = Duration::from_secs(1);
/// How often the housekeeping tick runs.
const TICK: Duration = Duration::from_millis(250);
/// A sandbox that has not reported READY (or INIT_OK) by then is killed.
const BOOT_LIMIT: Duration = Duration::from_secs(20);
/// How long an invocation may wait for a sandbox beyond its own timeout.
const QUEUE_ALLOWANCE: Duration = Duration::from_secs(10);

/// A deployed function version the daemon is serving.
struct FnState {
    function: Rc<Function>,
    /// Detached read-only mount of the version's code, sent to every
    /// sandbox assigned to it.
    code: OwnedFd,
    /// The version's code directory, mounted at each sandbox's /var/task.
    code_dir: PathBuf,
    /// A read-only tree of the code ready for the next sandbox's
    /// /var/task.
    spare_code: Option<OwnedFd>,
    /// Which of /var/task, /var/task/lib and /opt/lib can hold a library
    /// (`LD_LIBRARY_PATH`).
    library_dirs: Vec<&'static str>,
    /// The version's merged layers, mounted at each sandbox's /opt.
    opt_dir: Option<PathBuf>,
    queue: FunctionQueue,
    /// Replaced by a newer version or removed: its sandboxes end as soon
    /// as they are idle.
    retired: bool,
}

pub(crate) struct Daemon {
    config: DaemonConfig,
    reactor: Reactor,
    registry: Registry,
    pool: Pool,
    functions: HashMap<FunctionKey, FnState>,
    invocations: HashMap<InvocationId, Invocation>,
    /// Every invocation's [`Invocation::expires`], earliest first. Kept
    /// here rather than as one kernel timer per invocation: the loop's wait
    /// ends at the first, and an answered invocation just leaves the set.
    deadlines: BTreeSet<(Instant, InvocationId)>,
    conns: HashMap<u64, Conn>,
    /// Per function name, across its versions.
    counters: HashMap<String, FnCounters>,
    started: Instant,
    last_tick: Instant,
    listener: Rc<OwnedFd>,
    signals: Rc<OwnedFd>,
    next_conn: u64,
    next_invocation: InvocationId,
    /// Pool refill is paused until then after a failed spawn.
    refill_after: Instant,
    /// The pool fell short: refill once the loop has nothing else to do,
    /// so creating sandboxes never delays an answer.
    refill_wanted: bool,
    /// When the pool was first found short and not yet refilled.
    refill_wanted_since: Option<Instant>,
    stopping: bool,
    trace_ids: crate::trace::TraceIds,
    spans: crate::trace::SpanStore,
    otlp: Option<crate::trace::otlp::OtlpExporter>,
    /// CPUs this process may run on (the busy poll stops at as many
    /// running invocations).
    cpus: usize,
    /// Sandboxes started by pre-warming that have not served yet.
    prewarmed: std::collections::HashSet<crate::scheduler::SandboxId>,
}

impl Daemon {
    /// The event loop.
    fn serve(&mut self) -> anyhow::Result<()> {
        self.submit_accept();
        self.submit_signal_read();
        self.reactor
            .submit(Event::Tick.token(), Op::Timeout { after: TICK });
        self.refill_pool();
        let mut completions: Vec<Completion> = Vec::with_capacity(64);
        while !self.stopping {
            completions.clear();
            let refill = self.refill_due();
            let timeout = match self.deadlines.first() {
                _ if refill => Some(Duration::ZERO),
                Some(&(at, _)) => Some(at.saturating_duration_since(Instant::now())),
                None => None,
            };
            self.wait(&mut completions, timeout)?;
            if completions.is_empty() && refill {
                self.refill_wanted = false;
                self.refill_pool();
            }
            for completion in completions.drain(..) {
                self.dispatch(completion);
            }
            self.expire_deadlines();
        }
        Ok(())
    }

    /// Wait for completions: first by polling for up to
    /// [`DaemonConfig::busy_poll`], then by sleeping until `timeout`. On a
    /// virtual machine an idle CPU halts, and waking it for the next
    /// request or doorbell costs tens of microseconds; polling briefly
    /// keeps this one awake while an answer is likely on its way (a
    /// runtime's RESULT, a client's next request). Only while fewer
    /// invocations may be running than there are CPUs (one waiting on a
    /// nested call does not count): with more, the CPUs have work and do
    /// not halt, and polling would take one from a runtime.
    fn wait(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> io::Result<()> {
        let poll = timeout != Some(Duration::ZERO)
            && !self.config.busy_poll.is_zero()
            && self.running_fewer_than_cpus();
        if poll {
            let until = Instant::now() + self.config.busy_poll;
            loop {
                self.reactor.wait(out, Some(Duration::ZERO))?;
                if !out.is_empty() || Instant::now() >= until {
                    break;
                }
                std::hint::spin_loop();
            }
            if !out.is_empty() {
                return Ok(());
            }
        }
        self.reactor.wait(out, timeout)
    }

    fn running_fewer_than_cpus(&self) -> bool {
        let running = self.invocations.values().filter(|i| i.calling.is_none());
        running.take(self.cpus).count() < self.cpus
    }

    /// Refill the pool now? Not while a cold start is in flight (loading
    /// its function or running its first invocation): creating a sandbox
    /// takes the loop a millisecond or more, and the cold start would wait
    /// for that too. Unless a shape has run dry (its next cold start would
    /// wait for a whole new sandbox, which is worse), or the refill has
    /// been held back longer than [`REFILL_PATIENCE`]: under a steady
    /// stream of cold starts one is nearly always in flight.
    fn refill_due(&mut self) -> bool {
        if !self.refill_wanted {
            self.refill_wanted_since = None;
            return false;
        }
        let since = *self.refill_wanted_since.get_or_insert_with(Instant::now);
        let cold_start_in_flight =
            self.pool.any_cold() || self.functions.values().any(|f| f.queue.queued() > 0);
        !cold_start_in_flight || self.pool.runs_dry() || since.elapsed() > REFILL_PATIENCE
    }

    fn dispatch(&mut self, completion: Completion) {
        let Some(event) = Event::from_token(completion.token) else {
            tracing::warn!(token = completion.token, "completion with an unknown token");
            return;
        };
        match event {
            Event::Accept => self.on_accept(completion),
            Event::Signal => self.on_signal(completion),
            Event::Tick => self.on_tick(),
            Event::ConnRead(id) => self.on_conn_read(id, completion),
            Event::ConnWrite(id) => self.on_conn_write(id, completion),
            Event::Bell(id) => self.on_bell(id, completion),
            Event::Exit(id) => self.on_exit(id),
        }
    }

    fn submit_signal_read(&mut self) {
        self.reactor.submit(
            Event::Signal.token(),
            Op::Read {
                fd: self.signals.clone(),
                buf: Vec::with_capacity(128),
            },
        );
    }

    fn on_signal(&mut self, completion: Completion) {
        match completion.result {
            Ok(_) => {
                tracing::info!("signal received, shutting down");
                self.stopping = true;
            }
            Err(err) => {
                tracing::warn!(%err, "reading the signalfd failed");
                self.submit_signal_read();
            }
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.pool
            .tick(now.saturating_duration_since(self.last_tick));
        self.last_tick = now;
        self.reap(now);
        if let Some(otlp) = &mut self.otlp {
            otlp.flush();
        }
        for id in self.pool.stuck_booting(BOOT_LIMIT) {
            if let Some(suppressed) = log_limit::admit() {
                tracing::warn!(
                    sandbox = id,
                    suppressed,
                    "sandbox did not finish starting in time, killing it"
                );
            }
            self.pool.kill(id, crate::pool::KillReason::BootTimeout);
        }
        self.refill_wanted = true;
        if !self.stopping {
            self.reactor
                .submit(Event::Tick.token(), Op::Timeout { after: TICK });
        }
    }

    /// Kill every sandbox and wait for each to be gone; fail what is left.
    fn shutdown(&mut self) {
        let ids = self.pool.ids();
        for &id in &ids {
            self.pool.kill(id, crate::pool::KillReason::Shutdown);
        }
        for id in ids {
            if let Some(slot) = self.pool.remove(id) {
                if let Err(err) = slot.sandbox.destroy() {
                    tracing::warn!(sandbox = id, %err, "sandbox teardown incomplete");
                }
            }
        }
        match self.pool.env().cleanup_leftovers() {
            Ok(0) => {}
            Ok(n) => tracing::warn!(count = n, "removed leftover sandbox cgroups at shutdown"),
            Err(err) => tracing::warn!(%err, "cleanup at shutdown failed"),
        }
        if let Err(err) = std::fs::remove_file(&self.config.socket) {
            tracing::warn!(socket = %self.config.socket.display(), %err, "could not remove the socket");
        }
        tracing::info!("daemon stopped");
    }
}
