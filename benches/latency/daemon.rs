//! A real `sprout serve` on a temporary socket and state dir, with its log
//! read line by line so the bench can see sandboxes being created and
//! pooled (which the client protocol does not expose).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sprout::client::Client;

/// Something the daemon logged about a sandbox; `at` is when the bench read
/// the line.
#[derive(Debug, Clone)]
pub enum Event {
    /// `sandbox cloned`: a sandbox process exists.
    Cloned {
        at: Instant,
        sandbox: u64,
        pid: i32,
        runtime: String,
    },
    /// `pooled`: a tenant-neutral sandbox finished booting and waits in the
    /// pool.
    Pooled {
        at: Instant,
        sandbox: u64,
        boot_ms: f64,
    },
}

#[derive(Default)]
struct Log {
    events: Vec<Event>,
    backend: Option<String>,
}

pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
    log: Arc<(Mutex<Log>, Condvar)>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Start a daemon keeping `pool` idle sandboxes per runtime, and wait
    /// until it answers.
    pub fn start(work: &Path, pool: usize) -> Daemon {
        Daemon::start_with(work, pool_flags(pool))
    }

    /// Start a daemon whose pool adapts between `min` and `max` idle
    /// sandboxes per runtime, and wait until it answers.
    pub fn start_adaptive(work: &Path, min: usize, max: usize) -> Daemon {
        let flags = vec![
            "--pool-min".into(),
            min.to_string(),
            "--pool-max".into(),
            max.to_string(),
        ];
        Daemon::start_with(work, flags)
    }

    fn start_with(work: &Path, pool_flags: Vec<String>) -> Daemon {
        let dir = tempfile::tempdir_in(work).expect("daemon temp dir");
        let socket = dir.path().join("sprout.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sprout"))
            .arg("serve")
            .args(pool_flags)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env(
                "RUST_LOG",
                "warn,sprout::sandbox::spawn=debug,sprout::daemon::sandboxes=debug,\
                 sprout::daemon::setup=info,sprout::reactor=info",
            )
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sprout serve");
        let log = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        let stderr = child.stderr.take().expect("piped");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                let line = strip_ansi(&line);
                let (lock, cvar) = &*sink;
                let mut log = lock.lock().unwrap();
                match parse(&line, at) {
                    Some(Parsed::Event(e)) => log.events.push(e),
                    Some(Parsed::Backend(b)) => log.backend = Some(b),
                    None if line.contains("ERROR") => {
                        eprintln!("daemon: {line}")
                    }
                    None => {}
                }
                cvar.notify_all();
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while Client::connect(&socket).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("sprout serve exited at start-up: {status}");
            }
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Daemon {
            child,
            socket,
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn backend(&self) -> Option<String> {
        self.log.0.lock().unwrap().backend.clone()
    }

    pub fn events(&self) -> Vec<Event> {
        self.log.0.lock().unwrap().events.clone()
    }

    /// The runtime of every sandbox the daemon cloned so far.
    pub fn runtimes(&self) -> HashMap<u64, String> {
        self.cloned()
            .into_iter()
            .map(|(_, sandbox, _, runtime)| (sandbox, runtime))
            .collect()
    }

    /// `(when, sandbox, pid, runtime)` of every sandbox cloned so far.
    pub fn cloned(&self) -> Vec<(Instant, u64, i32, String)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Cloned {
                    at,
                    sandbox,
                    pid,
                    runtime,
                } => Some((at, sandbox, pid, runtime)),
                Event::Pooled { .. } => None,
            })
            .collect()
    }

    /// `(when, sandbox, boot_ms)` of every `runtime` sandbox pooled so far.
    pub fn pooled(&self, runtime: &str) -> Vec<(Instant, u64, f64)> {
        let runtimes = self.runtimes();
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Pooled {
                    at,
                    sandbox,
                    boot_ms,
                } if runtimes.get(&sandbox).map(String::as_str) == Some(runtime) => {
                    Some((at, sandbox, boot_ms))
                }
                _ => None,
            })
            .collect()
    }

    /// Wait until at least `count` `runtime` sandboxes were pooled in all;
    /// false on timeout.
    pub fn wait_pooled(&self, runtime: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.log;
        let mut guard = lock.lock().unwrap();
        loop {
            drop(guard);
            if self.pooled(runtime).len() >= count {
                return true;
            }
            guard = lock.lock().unwrap();
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = cvar
                .wait_timeout(guard, (deadline - now).min(Duration::from_millis(20)))
                .unwrap()
                .0;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.pid());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// The pool flags of the daemon being benchmarked: `--pool-size N`, or the
/// min/max pair where the daemon has those instead.
fn pool_flags(pool: usize) -> Vec<String> {
    let help = Command::new(env!("CARGO_BIN_EXE_sprout"))
        .args(["serve", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let n = pool.to_string();
    if help.contains("--pool-size") {
        vec!["--pool-size".into(), n]
    } else if help.contains("--pool-min") && help.contains("--pool-max") {
        vec!["--pool-min".into(), n.clone(), "--pool-max".into(), n]
    } else {
        panic!("sprout serve has neither --pool-size nor --pool-min/--pool-max:\n{help}")
    }
}

enum Parsed {
    Event(Event),
    Backend(String),
}

fn parse(line: &str, at: Instant) -> Option<Parsed> {
    let fields: HashMap<&str, &str> = line
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect();
    let num = |k: &str| fields.get(k).and_then(|v| v.parse::<u64>().ok());
    if line.contains("sandbox cloned") {
        return Some(Parsed::Event(Event::Cloned {
            at,
            sandbox: num("sandbox")?,
            pid: num("pid")? as i32,
            runtime: fields.get("runtime")?.to_string(),
        }));
    }
    if line.contains(" pooled") {
        return Some(Parsed::Event(Event::Pooled {
            at,
            sandbox: num("sandbox")?,
            boot_ms: num("boot_ms")? as f64,
        }));
    }
    if line.contains("backend=") {
        return Some(Parsed::Backend(fields.get("backend")?.to_string()));
    }
    None
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
