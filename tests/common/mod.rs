//! A real daemon on a temporary socket and state directory, for the
//! end-to-end tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sprout::client::Client;
use sprout::protocol::{DeploySpec, FunctionInfo, InvokeResponse};

pub const BACKENDS: [&str; 2] = ["uring", "epoll"];

pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub state: PathBuf,
}

impl Daemon {
    /// Start `sprout serve` with `backend` and wait until it accepts.
    pub fn start(backend: &str) -> Daemon {
        Self::start_with(backend, &[])
    }

    pub fn start_with(backend: &str, extra: &[&str]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("sprout-e2e-")
            .tempdir()
            .expect("temp dir");
        let socket = dir.path().join("sprout.sock");
        let state = dir.path().join("state");
        let mut daemon = Daemon {
            child: None,
            dir,
            socket,
            state,
        };
        daemon.spawn(backend, extra);
        daemon
    }

    /// (Re)start the daemon process on the same socket and state dir.
    pub fn spawn(&mut self, backend: &str, extra: &[&str]) {
        let log = std::fs::File::create(self.dir.path().join("daemon.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sprout"))
            .args(["serve", "--socket"])
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state)
            .args(["--event-loop", backend])
            .args(extra)
            .env("RUST_LOG", "sprout=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sprout serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // Answering a request, not just accepting: a daemon killed a
            // moment ago can still hold its listener open.
            if Client::connect(&self.socket).is_ok_and(|c| c.list().is_ok()) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited at start ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not accept within 20 s:\n{}", self.log());
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket).expect("connect to daemon")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// SIGTERM and wait; panics if the daemon does not stop in time.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "daemon exited with {status}:\n{}",
                    self.log()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("daemon did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: a crash that leaves everything behind.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Run the CLI against this daemon.
    pub fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_sprout"))
            .args(args)
            .env("SPROUT_SOCKET", &self.socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            input.write_all(bytes).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// The cgroup directories this daemon's sandboxes live in.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let instance = instance_of(&self.state);
        let mut dirs = Vec::new();
        for root in cgroup_roots() {
            let dir = root.join(&instance);
            if dir.exists() {
                for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                    if entry.file_type().unwrap().is_dir() {
                        dirs.push(entry.path());
                    }
                }
            }
        }
        dirs
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let status = self.child.as_mut().map(|c| c.try_wait());
            eprintln!(
                "--- daemon log (status {status:?}) ---\n{}--- end of daemon log ---",
                self.log()
            );
        }
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where cgroup hierarchies that may hold a sprout instance are mounted.
pub fn cgroup_roots() -> Vec<PathBuf> {
    ["memory", "pids", "cpu", "unified"]
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c))
        .chain(std::iter::once(PathBuf::from("/sys/fs/cgroup")))
        .filter(|p| p.is_dir())
        .collect()
}

/// The instance name the daemon derives from its state directory.
pub fn instance_of(state: &Path) -> String {
    let canonical = std::fs::canonicalize(state).unwrap_or_else(|_| state.to_path_buf());
    sprout::daemon::instance_name(&canonical)
}

/// Processes whose command name starts with "sprout:" and whose cgroup
/// path names `instance`.
pub fn sandbox_processes(instance: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        if cgroup.contains(instance) {
            pids.push(pid);
        }
    }
    pids
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn python_spec(name: &str, handler: &str) -> DeploySpec {
    DeploySpec {
        name: name.into(),
        runtime: "python".into(),
        handler: Some(handler.into()),
        code: fixtures().join("pyfuncs"),
        ..Default::default()
    }
}

pub fn deploy_python(client: &Client, name: &str, handler: &str) -> FunctionInfo {
    client.deploy(&python_spec(name, handler)).expect("deploy")
}

/// A code directory holding the hello-native `bootstrap`, built once.
pub fn native_code_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| code_dir_of_binary("hello-native", "bootstrap", "native"))
        .clone()
}

/// `cargo build -p PACKAGE`, then a fresh code directory (named after
/// `tag`) holding its binary `bin` as `bootstrap`.
pub fn code_dir_of_binary(package: &str, bin: &str, tag: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", package])
        .current_dir(root)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building {package} failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = std::env::temp_dir().join(format!("sprout-{tag}-code-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Copied by a child process: a writable descriptor of the file in
    // this test process could leak into a concurrent fork and make its
    // exec fail with ETXTBSY.
    let copied = Command::new("cp")
        .arg(target.join("debug").join(bin))
        .arg(dir.join("bootstrap"))
        .status()
        .unwrap();
    assert!(copied.success());
    dir
}

pub fn native_spec(name: &str) -> DeploySpec {
    DeploySpec {
        name: name.into(),
        runtime: "native".into(),
        handler: None,
        code: native_code_dir(),
        ..Default::default()
    }
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// The decoded result of an invocation that must have succeeded (else
/// the test fails with the error and `daemon`'s log).
pub fn ok(response: &InvokeResponse, daemon: &Daemon) -> serde_json::Value {
    assert!(
        response.error.is_none(),
        "{:?}\n{}",
        response.error,
        daemon.log()
    );
    json(&response.result)
}

/// Generate one test per event-loop backend from `fn name(backend: &str)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $(
                #[test]
                fn $name() {
                    if sprout::testing::require_root(stringify!($name)) {
                        super::$name("uring");
                    }
                }
            )*
        }
        mod epoll {
            $(
                #[test]
                fn $name() {
                    if sprout::testing::require_root(stringify!($name)) {
                        super::$name("epoll");
                    }
                }
            )*
        }
    };
}

/// The error kind an invocation ended in, whether the daemon refused it
/// up front (an Error frame) or it failed in a sandbox.
pub fn error_kind(
    result: Result<sprout::protocol::InvokeResponse, sprout::client::ClientError>,
) -> Option<sprout::protocol::ErrorKind> {
    match result {
        Ok(response) => response.error.map(|e| e.kind),
        Err(err) => Some(
            err.error_kind()
                .unwrap_or_else(|| panic!("transport error: {err}")),
        ),
    }
}

/// Whether process `pid` is gone (or a zombie) within a few seconds:
/// SIGKILL is asynchronous, and the reaper of an orphan is the host's init.
pub fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state follows the parenthesised command name.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if matches!(state, None | Some("Z") | Some("X")) {
            return true;
        }
        if Instant::now() > deadline {
            eprintln!("process {pid} still alive: {stat}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
