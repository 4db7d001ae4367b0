//! Invocation latency through a real daemon: warm round trip, cold start
//! from the pre-forked pool, cold start with the pool empty, for the native
//! and python runtimes.
//!
//! `cargo bench --bench latency` (as root). `-- --quick` takes fewer
//! samples; CI only compiles this (`cargo bench --no-run`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sprout::client::Client;
use sprout::protocol::DeploySpec;

struct Daemon {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(pool_size: usize) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bench.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_sprout"))
            .args(["serve", "--pool-size", &pool_size.to_string(), "--socket"])
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start sprout serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Client::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child,
            socket,
            _dir: dir,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn native_code() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-q", "-p", "hello-native"])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let dir = std::env::temp_dir().join("sprout-bench-native");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(target.join("release/bootstrap"), dir.join("bootstrap")).unwrap();
    dir
}

fn spec(name: &str, runtime: &str, native: &Path) -> DeploySpec {
    let (handler, code) = match runtime {
        "python" => (
            Some("app.handler".into()),
            root().join("examples/hello-python"),
        ),
        _ => (None, native.to_path_buf()),
    };
    DeploySpec {
        name: name.into(),
        runtime: runtime.into(),
        handler,
        code,
        memory_mb: None,
        timeout_secs: None,
        env: BTreeMap::new(),
    }
}

/// p50 and p99 (and the sample count) of durations.
fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let note = if samples.len() < 100 {
        " (too few samples for a meaningful p99)"
    } else {
        ""
    };
    println!(
        "{label:<34} n={:<6} p50={:>9.1} us  p99={:>9.1} us{note}",
        samples.len(),
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
    );
}

fn warm(client: &Client, name: &str, iterations: usize) -> Vec<Duration> {
    for _ in 0..iterations / 10 + 10 {
        client.invoke(name, b"{}").unwrap();
    }
    (0..iterations)
        .map(|_| {
            let start = Instant::now();
            let response = client.invoke(name, b"{}").unwrap();
            let elapsed = start.elapsed();
            assert!(response.error.is_none(), "{:?}", response.error);
            assert!(!response.cold);
            elapsed
        })
        .collect()
}

/// Deploy a fresh function each time and time its first invocation.
fn cold(
    client: &Client,
    runtime: &str,
    native: &Path,
    tag: &str,
    n: usize,
    settle: Duration,
) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            std::thread::sleep(settle);
            let name = format!("cold-{tag}-{runtime}-{i}");
            client.deploy(&spec(&name, runtime, native)).unwrap();
            let start = Instant::now();
            let response = client.invoke(&name, b"{}").unwrap();
            let elapsed = start.elapsed();
            assert!(response.error.is_none(), "{:?}", response.error);
            assert!(response.cold);
            client.remove(&name).unwrap();
            elapsed
        })
        .collect()
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the latency benchmark needs root");
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let (warm_n, cold_n) = if quick { (500, 10) } else { (20_000, 100) };
    let native = native_code();
    println!(
        "sprout latency benchmark ({} samples warm, {} cold)",
        warm_n, cold_n
    );

    let daemon = Daemon::start(2);
    let client = Client::connect(&daemon.socket).unwrap();
    for runtime in ["native", "python"] {
        let name = format!("warm-{runtime}");
        client.deploy(&spec(&name, runtime, &native)).unwrap();
        report(
            &format!("warm invoke, {runtime}"),
            warm(&client, &name, warm_n),
        );
    }
    // The pool refills in the background; give it time between samples.
    for runtime in ["native", "python"] {
        report(
            &format!("cold start from pool, {runtime}"),
            cold(
                &client,
                runtime,
                &native,
                "pool",
                cold_n,
                Duration::from_millis(150),
            ),
        );
    }
    drop(client);
    drop(daemon);

    let daemon = Daemon::start(0);
    let client = Client::connect(&daemon.socket).unwrap();
    for runtime in ["native", "python"] {
        report(
            &format!("cold start, empty pool, {runtime}"),
            cold(&client, runtime, &native, "empty", cold_n, Duration::ZERO),
        );
    }
}
