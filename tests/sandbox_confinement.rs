//! A real sandbox, probed from inside: spawn it, wait for READY on its
//! ring, assign a probe function and check what it reports against the
//! host. Also teardown (nothing left) and crash leftovers.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::Value;
use sprout::ring::{HostRing, RuntimeMessage};
use sprout::sandbox::{
    open_code_mount, Assignment, Limits, Package, RuntimeKind, Sandbox, SandboxEnv,
};
use sprout::testing::require_root;

const READY_TIMEOUT: Duration = Duration::from_secs(20);

const PROBE: &str = r#"
import json, os, socket, sys

def _status():
    keep = ("CapEff", "CapBnd", "CapPrm", "CapInh", "CapAmb", "NoNewPrivs", "Seccomp", "Uid", "Gid", "Groups")
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in keep:
                out[key] = value.strip()
    return out

def _write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        os.unlink(path)
        return 0
    except OSError as e:
        return e.errno

def _interfaces():
    try:
        return [name for _, name in socket.if_nameindex()]
    except OSError as e:
        return ["error: %s" % e]

def _net_dev():
    with open("/proc/self/net/dev") as f:
        return sorted(line.split(":")[0].strip() for line in f.readlines()[2:])

def _errno(f, *args):
    try:
        f(*args)
        return 0
    except OSError as e:
        return e.errno

def handler(event, ctx):
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink("/proc/self/fd/" + fd)
        except OSError as e:
            fds[fd] = "gone"
    return {
        "uid_map": open("/proc/self/uid_map").read(),
        "gid_map": open("/proc/self/gid_map").read(),
        "status": _status(),
        "mountinfo": open("/proc/self/mountinfo").read(),
        "interfaces": _interfaces(),
        "net_dev": _net_dev(),
        "hostname": socket.gethostname(),
        "dev": sorted(os.listdir("/dev")),
        "fds": fds,
        "code_path": sys.path[0],
        "environ": dict(os.environ),
        "root_write": _write("/probe"),
        "tmp_write": _write("/tmp/probe"),
        "etc_write": _write("/etc/probe"),
        "ns": {n: os.readlink("/proc/self/ns/" + n) for n in os.listdir("/proc/self/ns")},
        "pid": os.getpid(),
        "uid": os.getuid(),
        "setuid": _errno(os.setuid, 1),
        "chroot": _errno(os.chroot, "/tmp"),
        "mknod": _errno(os.mknod, "/tmp/node", 0o600 | 0o020000, os.makedev(1, 3)),
        "proc": sorted(os.listdir("/proc")),
        "root": sorted(os.listdir("/")),
        "etc": sorted(os.listdir("/etc")),
    }
"#;

fn unique_instance(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "sprout-test-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The package of a function whose code is `code`: no layers, /tmp 512 MiB.
fn package(code: &Path) -> Package<'static> {
    Package {
        code: open_code_mount(code).expect("a read-only tree of the code"),
        layers: None,
        tmp_bytes: 512 << 20,
    }
}

fn prepare(state: &Path, instance: &str) -> SandboxEnv {
    let mut env = SandboxEnv::prepare(state, instance).expect("prepare sandbox env");
    env.set_init_program(Path::new(env!("CARGO_BIN_EXE_sprout")))
        .expect("init program");
    env
}

/// Wait for the next message on the ring, failing with the init's own
/// error if the sandbox dies first.
fn next_message(ring: &mut HostRing, sandbox: &Sandbox, timeout: Duration) -> RuntimeMessage {
    let deadline = Instant::now() + timeout;
    let bell = ring.response_bell();
    let pidfd = sandbox.pidfd();
    loop {
        if let Some(msg) = ring.recv().expect("ring") {
            return msg;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no message from sandbox {} within {timeout:?}",
            sandbox.id()
        );
        let mut fds = [
            PollFd::new(bell.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        let ms = PollTimeout::try_from(left.as_millis().min(1000) as u32).unwrap();
        poll(&mut fds, ms).expect("poll");
        if fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            let mut buf = [0u8; 8];
            let _ = nix::unistd::read(bell.as_fd(), &mut buf);
            continue;
        }
        if fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            if let Some(msg) = ring.recv().expect("ring") {
                return msg;
            }
            panic!(
                "sandbox {} died: {}",
                sandbox.id(),
                sandbox.init_error().unwrap_or_else(|| {
                    "no error reported (run with SPROUT_SANDBOX_STDERR=inherit)".into()
                })
            );
        }
    }
}

fn code_dir(files: &[(&str, &[u8], u32)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, bytes, mode) in files {
        let path = dir.path().join(name);
        write_in_child(&path, bytes);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    dir
}

/// Write a file from a child process, so no writable descriptor of it ever
/// exists in this (multi-threaded, sandbox-cloning) test process: a clone
/// that inherited one would make exec of the file fail with ETXTBSY.
fn write_in_child(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "cat > \"$0\""])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    assert!(child.wait().unwrap().success());
}

fn assignment(handler: &str) -> Assignment {
    Assignment {
        function: "probe".into(),
        version: 1,
        handler: handler.into(),
        env: BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]),
        memory_mb: 256,
        timeout_ms: 10_000,
    }
}

fn host_ns(name: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{name}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn cgroup_dirs(instance: &str, id: u64) -> Vec<PathBuf> {
    ["memory", "cpu", "pids"]
        .iter()
        .map(|c| {
            Path::new("/sys/fs/cgroup")
                .join(c)
                .join(instance)
                .join(format!("sandbox-{id}"))
        })
        .chain(std::iter::once(
            Path::new("/sys/fs/cgroup")
                .join(instance)
                .join(format!("sandbox-{id}")),
        ))
        .collect()
}

fn assert_instance_gone(instance: &str) {
    for c in ["memory", "cpu", "pids"] {
        let dir = Path::new("/sys/fs/cgroup").join(c).join(instance);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

fn assert_gone(pid: i32, instance: &str, id: u64) {
    // SAFETY-free check through /proc: a reaped pid has no directory (pids
    // are not reused this fast on a 4M pid space).
    assert!(
        !sprout::sys::process::process_exists(pid),
        "process {pid} still exists"
    );
    for dir in cgroup_dirs(instance, id) {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn python_sandbox_is_confined() {
    if !require_root("python_sandbox_is_confined") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let instance = unique_instance("py");
    let env = prepare(state.path(), &instance);
    let (mut ring, end) = HostRing::create(1 << 20).unwrap();
    let started = Instant::now();
    let mut sandbox = env
        .spawn(1, RuntimeKind::Python, &Limits::for_memory_mb(256), end)
        .expect("spawn");
    assert_eq!(
        next_message(&mut ring, &sandbox, READY_TIMEOUT),
        RuntimeMessage::Ready
    );
    println!("python spawn -> READY: {:?}", started.elapsed());

    let code = code_dir(&[("probe.py", PROBE.as_bytes(), 0o644)]);
    let mount = open_code_mount(code.path()).unwrap();
    sandbox
        .assign(
            package(code.path()),
            mount.as_fd(),
            &assignment("probe.handler"),
        )
        .unwrap();
    drop(mount);
    assert_eq!(
        next_message(&mut ring, &sandbox, READY_TIMEOUT),
        RuntimeMessage::InitOk
    );
    ring.send_invoke(7, b"{}", b"{}").unwrap();
    let body = match next_message(&mut ring, &sandbox, READY_TIMEOUT) {
        RuntimeMessage::Result { id: 7, body } => body,
        other => panic!("expected a result, got {other:?}"),
    };
    let report: Value = serde_json::from_slice(&body).unwrap();
    check_report(&report, &sandbox);

    let pid = sandbox.pid();
    sandbox.destroy().expect("destroy");
    assert_gone(pid, &instance, 1);
    assert_eq!(env.cleanup_leftovers().unwrap(), 0);
    drop(env);
    assert_instance_gone(&instance);
}

fn check_report(report: &Value, sandbox: &Sandbox) {
    let text = |key: &str| {
        report[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: {report}"))
            .to_owned()
    };

    // Identity: uid/gid 0 inside, one unprivileged host uid outside.
    for key in ["uid_map", "gid_map"] {
        let map: Vec<u64> = text(key)
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(map, vec![0, u64::from(sandbox.host_uid()), 1], "{key}");
        assert_ne!(sandbox.host_uid(), 0);
    }
    let status = &report["status"];
    for cap in ["CapEff", "CapBnd", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(status[cap], "0000000000000000", "{cap}");
    }
    assert_eq!(status["NoNewPrivs"], "1");
    assert_eq!(status["Seccomp"], "2");
    assert_eq!(status["Groups"], "", "supplementary groups must be dropped");

    // Namespaces: all fresh except time.
    let ns = &report["ns"];
    for name in ["user", "pid", "mnt", "net", "ipc", "uts", "cgroup"] {
        assert_ne!(
            ns[name].as_str().unwrap(),
            host_ns(name),
            "{name} namespace shared with the host"
        );
    }
    assert_eq!(
        report["pid"], 2,
        "the runtime is the first child of its namespace's pid 1, the reaper"
    );
    assert_eq!(
        report["uid"], 0,
        "uid 0 of the sandbox's own user namespace"
    );
    // Without capabilities, uid 0 of the namespace can do nothing privileged.
    assert_eq!(report["setuid"], libc::EPERM);
    assert_eq!(report["chroot"], libc::EPERM);
    assert_eq!(report["mknod"], libc::EPERM);
    // The code is at /var/task, first on the runtime's path.
    assert_eq!(text("code_path"), "/var/task");
    let procs: Vec<&str> = report["proc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        procs
            .iter()
            .all(|p| !p.chars().all(|c| c.is_ascii_digit()) || *p == "2"),
        "{procs:?}"
    );
    assert!(
        !procs.contains(&"sys") && !procs.contains(&"kcore"),
        "subset=pid: {procs:?}"
    );

    // Network and hostname.
    assert_eq!(report["interfaces"], serde_json::json!(["lo"]));
    assert_eq!(report["net_dev"], serde_json::json!(["lo"]));
    assert_eq!(text("hostname"), "sprout");

    // Filesystem.
    assert_eq!(report["root_write"], libc::EROFS, "/ must be read-only");
    assert_eq!(report["etc_write"], libc::EROFS, "/etc must be read-only");
    assert_eq!(report["tmp_write"], 0, "/tmp must be writable");
    assert_eq!(
        report["dev"],
        serde_json::json!(["full", "null", "random", "urandom", "zero"])
    );
    let etc: BTreeSet<&str> = report["etc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for secret in ["shadow", "gshadow", "ssh", "machine-id", "ssl"] {
        assert!(!etc.contains(secret), "/etc/{secret} leaked");
    }
    assert!(
        etc.contains("passwd") && etc.contains("ld.so.cache"),
        "{etc:?}"
    );
    check_mounts(&text("mountinfo"));

    // Descriptors: 0-6 and whatever listdir itself holds (the runtime
    // closes the code dir fd of the assignment: the code is at /var/task).
    let fds: BTreeMap<i32, String> = report["fds"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.as_str().unwrap().to_owned()))
        .collect();
    for fd in 0..=6 {
        assert!(fds.contains_key(&fd), "fd {fd} missing: {fds:?}");
    }
    // Above 6: Python's mmap duplicate of the ring memfd, and the directory
    // listdir had open (gone by the time it was read).
    for (fd, target) in &fds {
        let known = *fd <= 6 || target == "gone" || target.starts_with("/memfd:sprout-ring");
        assert!(known, "unexpected descriptor {fd} -> {target}: {fds:?}");
    }
    assert_eq!(fds[&0], "/dev/null");
    assert!(
        fds[&1].starts_with("pipe:["),
        "stdout goes to the reaper: {fds:?}"
    );
    assert_eq!(fds[&1], fds[&2], "stdout and stderr share the pipe");
    assert_eq!(
        fds[&3].split(' ').next(),
        Some("/memfd:sprout-ring"),
        "{fds:?}"
    );

    // Environment: ours and the function's, nothing of the host's.
    let environ: BTreeMap<String, String> =
        serde_json::from_value(report["environ"].clone()).unwrap();
    let keys: BTreeSet<&str> = environ.keys().map(String::as_str).collect();
    // The sandbox starts with Lambda's variables that no function changes
    // (this test's assignment carries none of the others).
    let neutral = sprout::lambda::env::tenant_neutral(RuntimeKind::Python, "us-east-1");
    let expected: BTreeSet<&str> = [
        "SPROUT_RUNTIME",
        "HOME",
        "GREETING",
        "SPROUT_FUNCTION",
        "SPROUT_FUNCTION_VERSION",
        "SPROUT_MEMORY_MB",
        "SPROUT_TIMEOUT_MS",
    ]
    .into_iter()
    .chain(neutral.iter().map(|(key, _)| *key))
    .collect();
    assert!(
        keys.is_subset(
            &expected
                .union(&BTreeSet::from(["LC_CTYPE"]))
                .copied()
                .collect()
        ),
        "{environ:?}"
    );
    assert_eq!(environ["HOME"], "/tmp");
    assert_eq!(environ["PATH"], "/usr/local/bin:/usr/bin:/bin:/opt/bin");
    assert_eq!(environ["AWS_REGION"], "us-east-1");
}

/// Every mount of the sandbox, by mount point; all read-only except /tmp,
/// /proc and the device binds.
fn check_mounts(mountinfo: &str) {
    let mut points = BTreeMap::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        points.insert(
            fields[4].to_owned(),
            fields[5].split(',').next().unwrap().to_owned(),
        );
    }
    let expected: BTreeSet<&str> = [
        "/",
        "/usr",
        "/etc",
        "/var/runtime",
        "/var/task",
        "/opt",
        "/tmp",
        "/dev",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/proc",
    ]
    .into_iter()
    .collect();
    let got: BTreeSet<&str> = points.keys().map(String::as_str).collect();
    assert_eq!(got, expected, "{mountinfo}");
    for ro in [
        "/",
        "/usr",
        "/etc",
        "/var/runtime",
        "/var/task",
        "/opt",
        "/dev",
    ] {
        assert_eq!(points[ro], "ro", "{ro} must be read-only:\n{mountinfo}");
    }
}

#[test]
fn leftovers_of_a_crashed_daemon_are_removed() {
    if !require_root("leftovers_of_a_crashed_daemon_are_removed") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let instance = unique_instance("crash");
    let env = prepare(state.path(), &instance);
    let (mut ring, end) = HostRing::create(1 << 16).unwrap();
    let sandbox = env
        .spawn(5, RuntimeKind::Python, &Limits::for_memory_mb(128), end)
        .expect("spawn");
    assert_eq!(
        next_message(&mut ring, &sandbox, READY_TIMEOUT),
        RuntimeMessage::Ready
    );
    let pid = sandbox.pid();
    let pidfd: OwnedFd = sandbox.pidfd().as_fd().try_clone_to_owned().unwrap();
    // The daemon "crashes": nothing of the sandbox is torn down.
    std::mem::forget(sandbox);
    assert!(cgroup_dirs(&instance, 5).iter().any(|d| d.exists()));

    // Another instance's cleanup does not touch it.
    let other = prepare(
        tempfile::tempdir().unwrap().path(),
        &unique_instance("other"),
    );
    assert_eq!(other.cleanup_leftovers().unwrap(), 0);
    assert!(sprout::sys::process::process_exists(pid));

    let restarted = prepare(state.path(), &instance);
    assert_eq!(restarted.cleanup_leftovers().unwrap(), 1);
    // The killed init is our (the test process's) child: reap it.
    let status = sprout::sys::process::pidfd_wait(pidfd.as_fd(), false).unwrap();
    assert!(status.is_some());
    assert_gone(pid, &instance, 5);
    let _ = pidfd.as_raw_fd();
}

#[test]
fn destroy_before_ready_leaves_nothing() {
    if !require_root("destroy_before_ready_leaves_nothing") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let instance = unique_instance("early");
    let env = prepare(state.path(), &instance);
    let (_ring, end) = HostRing::create(1 << 16).unwrap();
    let sandbox = env
        .spawn(9, RuntimeKind::Python, &Limits::for_memory_mb(128), end)
        .expect("spawn");
    let pid = sandbox.pid();
    sandbox.destroy().expect("destroy");
    assert_gone(pid, &instance, 9);
    drop(env);
    assert_instance_gone(&instance);
}

/// Dropping the environment first (daemon shutdown) kills what is left and
/// removes the instance; the sandbox's own teardown then finds nothing.
#[test]
fn dropping_the_environment_removes_the_instance() {
    if !require_root("dropping_the_environment_removes_the_instance") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let instance = unique_instance("shutdown");
    let env = prepare(state.path(), &instance);
    let (mut ring, end) = HostRing::create(1 << 16).unwrap();
    let sandbox = env
        .spawn(4, RuntimeKind::Native, &Limits::for_memory_mb(128), end)
        .expect("spawn");
    assert_eq!(
        next_message(&mut ring, &sandbox, READY_TIMEOUT),
        RuntimeMessage::Ready
    );
    let pid = sandbox.pid();
    drop(env);
    assert_instance_gone(&instance);
    sandbox.destroy().expect("destroy after the environment");
    assert_gone(pid, &instance, 4);
}

/// The native runtime: the init announces READY itself, then execs the
/// function's `bootstrap` (examples/hello-native) from the code mount.
#[test]
fn native_sandbox_runs_hello() {
    if !require_root("native_sandbox_runs_hello") {
        return;
    }
    let bootstrap = hello_native();
    let state = tempfile::tempdir().unwrap();
    let instance = unique_instance("native");
    let env = prepare(state.path(), &instance);
    let (mut ring, end) = HostRing::create(1 << 20).unwrap();
    let started = Instant::now();
    let mut sandbox = env
        .spawn(2, RuntimeKind::Native, &Limits::for_memory_mb(128), end)
        .expect("spawn");
    assert_eq!(
        next_message(&mut ring, &sandbox, READY_TIMEOUT),
        RuntimeMessage::Ready
    );
    println!("native spawn -> READY: {:?}", started.elapsed());

    let binary = std::fs::read(&bootstrap).unwrap();
    let code = code_dir(&[("bootstrap", &binary, 0o755)]);
    let mount = open_code_mount(code.path()).unwrap();
    let assigned = Instant::now();
    sandbox
        .assign(package(code.path()), mount.as_fd(), &assignment("main"))
        .unwrap();
    assert_eq!(
        next_message(&mut ring, &sandbox, READY_TIMEOUT),
        RuntimeMessage::InitOk
    );
    println!("native assign -> INIT_OK: {:?}", assigned.elapsed());
    ring.send_invoke(3, b"{}", br#"{"name":"sandbox"}"#)
        .unwrap();
    let body = match next_message(&mut ring, &sandbox, READY_TIMEOUT) {
        RuntimeMessage::Result { id: 3, body } => body,
        other => panic!("expected a result, got {other:?}"),
    };
    let result: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(result["message"], "Hello, sandbox!");
    assert_eq!(result["function"], "probe");
    let pid = sandbox.pid();
    sandbox.destroy().expect("destroy");
    assert_gone(pid, &instance, 2);
}

/// target/<profile>/bootstrap, built on demand.
fn hello_native() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_sprout"))
        .parent()
        .unwrap()
        .to_path_buf();
    let bootstrap = dir.join("bootstrap");
    if !bootstrap.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "hello-native"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build -p hello-native");
        assert!(status.success(), "cargo build -p hello-native failed");
    }
    bootstrap
}

const ENDINGS: &str = r#"
import os, signal

def handler(event, ctx):
    print("about to end: " + event, flush=True)
    if event == "exit":
        os._exit(3)
    os.kill(os.getpid(), getattr(signal, event))
"#;

/// The reaper (pid 1) exits with the runtime's exit code, or 128 + S when
/// signal S killed it; 128 + SIGSYS reads as a seccomp kill. What the
/// runtime printed is in the sandbox's log until the sandbox goes.
#[test]
fn the_reaper_reports_how_the_runtime_ended() {
    use sprout::sys::process::ExitStatus;
    if !require_root("the_reaper_reports_how_the_runtime_ended") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let instance = unique_instance("end");
    let env = prepare(state.path(), &instance);
    let code = code_dir(&[("endings.py", ENDINGS.as_bytes(), 0o644)]);
    let cases = [
        ("exit", ExitStatus::Exited(3), false),
        ("SIGSEGV", ExitStatus::Exited(128 + libc::SIGSEGV), false),
        ("SIGSYS", ExitStatus::Exited(128 + libc::SIGSYS), true),
    ];
    for (id, (event, status, policy)) in (1..).zip(cases) {
        let (mut ring, end) = HostRing::create(1 << 20).unwrap();
        let mut sandbox = env
            .spawn(id, RuntimeKind::Python, &Limits::for_memory_mb(128), end)
            .expect("spawn");
        assert_eq!(
            next_message(&mut ring, &sandbox, READY_TIMEOUT),
            RuntimeMessage::Ready
        );
        let mount = open_code_mount(code.path()).unwrap();
        sandbox
            .assign(
                package(code.path()),
                mount.as_fd(),
                &assignment("endings.handler"),
            )
            .unwrap();
        drop(mount);
        assert_eq!(
            next_message(&mut ring, &sandbox, READY_TIMEOUT),
            RuntimeMessage::InitOk
        );
        let payload = format!("{event:?}");
        ring.send_invoke(1, b"{}", payload.as_bytes()).unwrap();
        let deadline = Instant::now() + READY_TIMEOUT;
        while sandbox.exit_status().is_none() {
            assert!(Instant::now() < deadline, "{event}: the sandbox lives on");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sandbox.exit_status(), Some(status), "{event}");
        assert_eq!(sandbox.killed_by_policy(), policy, "{event}");
        let log = sandbox.log_path().to_owned();
        let printed = std::fs::read_to_string(&log).unwrap();
        assert_eq!(printed, format!("about to end: {event}\n"));
        sandbox.destroy().expect("destroy");
        assert!(!log.exists(), "{event}: the log goes with the sandbox");
    }
    drop(env);
    assert_instance_gone(&instance);
}
