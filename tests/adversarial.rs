//! The adversarial suite: hostile payloads run inside real sandboxes of a
//! real daemon, each trying one escape or abuse (items 1-20 of the
//! isolation issue) and reporting the exact outcome, which the tests
//! assert. The payloads are tests/probe/app.py (python) and the static C
//! program tests/probe/probe.c it runs, built here with gcc.
//!
//! One daemon per test, on the io_uring event loop; every test needs root.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use sprout::client::Client;
use sprout::protocol::{DeploySpec, ErrorKind, InvokeResponse};
use sprout::sandbox::LOG_CAP;

/// The code directory: app.py and the static probe, built once.
fn probe_code_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probe");
        let dir = std::env::temp_dir().join(format!("sprout-probe-code-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("gcc")
            .args(["-static", "-O2", "-pthread", "-Wall", "-o"])
            .arg(dir.join("probe"))
            .arg(src.join("probe.c"))
            .output()
            .expect("run gcc (the adversarial suite needs gcc and libc6-dev)");
        assert!(
            out.status.success(),
            "gcc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::copy(src.join("app.py"), dir.join("app.py")).unwrap();
        dir
    })
    .clone()
}

fn spec(name: &str, handler: &str) -> DeploySpec {
    DeploySpec {
        code: probe_code_dir(),
        ..python_spec(name, &format!("app.{handler}"))
    }
}

fn deploy(client: &Client, name: &str, handler: &str) {
    client.deploy(&spec(name, handler)).expect("deploy");
}

fn start() -> Daemon {
    Daemon::start("uring")
}

fn failed(response: &InvokeResponse) -> (ErrorKind, String) {
    let error = response.error.as_ref().unwrap_or_else(|| {
        panic!(
            "expected an error, got {}",
            String::from_utf8_lossy(&response.result)
        )
    });
    (error.kind, error.message.clone())
}

fn invoke(client: &Client, name: &str, event: Value) -> InvokeResponse {
    client
        .invoke(name, event.to_string().as_bytes())
        .expect("invoke")
}

/// Host processes in `instance`'s cgroups, waiting briefly for SIGKILLed
/// ones to go.
fn wait_no_processes(instance: &str) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = sandbox_processes(instance);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether sandbox `sandbox`'s cgroup is gone within a few seconds (a
/// killed sandbox is torn down once the daemon sees its init exit).
fn cgroup_gone(daemon: &Daemon, sandbox: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while sandbox_cgroup_procs(daemon, sandbox).is_some() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The pids of sandbox `sandbox`'s cgroup (v1 pids controller or v2).
fn sandbox_cgroup_procs(daemon: &Daemon, sandbox: u64) -> Option<Vec<i32>> {
    let name = format!("sandbox-{sandbox}");
    let dir = daemon
        .cgroup_dirs()
        .into_iter()
        .find(|d| d.file_name().is_some_and(|n| n == name.as_str()))?;
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    Some(procs.lines().filter_map(|l| l.parse().ok()).collect())
}

macro_rules! root_test {
    ($name:ident) => {
        mod $name {
            #[test]
            fn uring() {
                if sprout::testing::require_root(concat!("adversarial::", stringify!($name))) {
                    super::$name();
                }
            }
        }
    };
}

/// Items 4, 5, 9-13 at the syscall level, and the non-native ABIs.
fn syscalls_get_the_exact_outcome() {
    let daemon = start();
    let client = daemon.client();
    deploy(&client, "syscalls", "syscalls");
    let got = ok(&invoke(&client, "syscalls", json!({})), &daemon);
    let got: BTreeMap<String, Value> = serde_json::from_value(got).unwrap();
    let sigsys = "signal 31";
    let expected: &[(&str, &str)] = &[
        ("unshare_user", "EPERM"),
        ("unshare_mount", "EPERM"),
        ("unshare_net", "EPERM"),
        ("clone_newuser", "EPERM"),
        ("clone_newpid_high_bits", "EPERM"),
        ("clone3", "ENOSYS"),
        ("mount", "EPERM"),
        ("umount2", "EPERM"),
        ("fsopen", "EPERM"),
        ("fsconfig", "EPERM"),
        ("fsmount", "EPERM"),
        ("fspick", "EPERM"),
        ("open_tree", "EPERM"),
        ("move_mount", "EPERM"),
        ("mount_setattr", "EPERM"),
        ("pivot_root", "EPERM"),
        ("chroot", "EPERM"),
        ("setns", "EPERM"),
        ("sethostname", "EPERM"),
        ("setdomainname", "EPERM"),
        ("setuid", "EPERM"),
        ("setresuid", "EPERM"),
        ("capset", "EPERM"),
        ("mknod", "EPERM"),
        ("mknodat", "EPERM"),
        ("ptrace_attach", "EPERM"),
        ("ptrace_traceme", "EPERM"),
        ("process_vm_readv", "EPERM"),
        ("process_vm_writev", "EPERM"),
        ("pidfd_getfd", "EPERM"),
        ("kcmp", "EPERM"),
        ("keyctl", "EPERM"),
        ("add_key", "EPERM"),
        ("request_key", "EPERM"),
        ("reboot", "EPERM"),
        ("swapon", "EPERM"),
        ("swapoff", "EPERM"),
        ("acct", "EPERM"),
        ("settimeofday", "EPERM"),
        ("clock_settime", "EPERM"),
        ("syslog", "EPERM"),
        ("prlimit_raise", "EPERM"),
        ("personality_query", "ok"),
        ("personality_no_aslr", "EPERM"),
        ("personality_read_implies_exec", "EPERM"),
        ("personality_high_bits", "EPERM"),
        ("io_uring_setup", "ENOSYS"),
        ("io_uring_enter", "EPERM"),
        ("io_uring_register", "EPERM"),
        ("socket_alg", "EPERM"),
        ("socket_vsock", "EPERM"),
        ("socket_packet", "EPERM"),
        ("socket_packet_high_bits", "EPERM"),
        ("socket_inet_raw", "EPERM"),
        ("socket_inet_raw_cloexec", "EPERM"),
        ("socket_inet6_raw", "EPERM"),
        ("socket_inet_packet", "EPERM"),
        ("socket_inet_ping", "EPERM"),
        ("socket_netlink_audit", "EPERM"),
        ("socket_inet_tcp", "ok"),
        ("socket_inet6_udp", "ok"),
        ("socket_unix", "ok"),
        ("connect_documentation_net", "ENETUNREACH"),
        ("connect_private_net", "ENETUNREACH"),
        ("connect_loopback_closed", "ECONNREFUSED"),
        ("x32_getpid", "ENOSYS"),
        ("i386_getpid", sigsys),
        ("bpf", sigsys),
        ("perf_event_open", sigsys),
        ("userfaultfd", sigsys),
        ("kexec_load", sigsys),
        ("kexec_file_load", sigsys),
        ("init_module", sigsys),
        ("finit_module", sigsys),
        ("delete_module", sigsys),
        // Allowed calls reach the kernel, which rejects the bad argument.
        ("ioctl_tcgets_bad_fd", "EBADF"),
        ("ioctl_tiocsti", "EPERM"),
        ("ioctl_tiocsti_high_bits", "EPERM"),
        ("read_bad_fd", "EBADF"),
        ("write_bad_pointer", "EFAULT"),
    ];
    let mut wrong = Vec::new();
    for (probe, outcome) in expected {
        let actual = got.get(*probe).and_then(Value::as_str);
        if actual != Some(outcome) {
            wrong.push(format!("{probe}: expected {outcome}, got {actual:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}\nall: {got:?}", wrong.join("\n"));
    assert_eq!(got["_exit"], 0);
}
root_test!(syscalls_get_the_exact_outcome);

/// Items 1-3, 6-8 and the daemon's socket (13), seen by the runtime.
fn the_sandbox_from_inside() {
    let daemon = start();
    let client = daemon.client();
    deploy(&client, "inside", "inside");
    let host_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let socket = daemon.socket.to_str().unwrap();
    let got = ok(
        &invoke(&client, "inside", json!({ "socket": socket })),
        &daemon,
    );

    // 1: only stdio (stdin /dev/null, stdout and stderr the pipe to the
    // reaper), the runtime's fds 3-6 and the code directory are open; cwd
    // is inside the new root.
    let fds = got["fds"].as_object().unwrap();
    let mut numbers: Vec<i32> = fds.keys().map(|k| k.parse().unwrap()).collect();
    numbers.sort_unstable();
    assert_eq!(&numbers[..7], &[0, 1, 2, 3, 4, 5, 6], "{fds:?}");
    for (fd, target) in fds {
        let target = target.as_str().unwrap();
        let expected = ["/dev/null", "anon_inode:[eventfd]", "/"].contains(&target)
            || target.starts_with("/memfd:sprout-ring")
            || target.starts_with("socket:[")
            || (["1", "2"].contains(&fd.as_str()) && target.starts_with("pipe:["));
        assert!(expected, "fd {fd} -> {target}");
    }
    assert_eq!(fds["1"], fds["2"], "stdout and stderr share the pipe");
    assert_eq!(got["cwd"], got["cwd_link"]);
    let root: Vec<&str> = got["root_entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        !root.contains(&"home") && !root.contains(&"root"),
        "{root:?}"
    );
    let cwd = got["cwd"].as_str().unwrap();
    assert!(
        root.iter()
            .any(|entry| cwd == "/" || cwd.starts_with(&format!("/{entry}"))),
        "cwd {cwd} outside the root {root:?}"
    );
    // 2: the environment is the runtime's and Lambda's, with no
    // credentials; /proc shows only pid 1 and its own children.
    for key in got["env"].as_array().unwrap() {
        let key = key.as_str().unwrap();
        let lambdas = sprout::lambda::env::is_reserved(key) && !key.contains("KEY");
        assert!(
            ["PATH", "LANG", "HOME", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH"].contains(&key)
                || key.starts_with("SPROUT_")
                || lambdas,
            "unexpected variable {key}"
        );
        assert_ne!(key, "AWS_SESSION_TOKEN");
    }
    // Only the runtime itself, pid 2: its reaper, pid 1, is not dumpable,
    // so hidepid=invisible hides it, and its memory and descriptors (the
    // log) are out of the runtime's reach.
    assert_eq!(got["pid"], 2);
    assert_eq!(got["pids"], json!([2]));
    assert_eq!(got["init_fds"], "ENOENT");
    assert_eq!(got["init_mem"], "ENOENT");
    // 3: setuid binaries gain nothing.
    assert_eq!(got["no_new_privs"], "1");
    let usr_bin = got["usr_bin_mount"].as_array().unwrap();
    assert!(usr_bin.contains(&json!("nosuid")), "{usr_bin:?}");
    assert_eq!(got["setuid0"], "EPERM");
    // 6: no writes to the kernel's knobs; nothing secret to read.
    let write = &got["write"];
    assert_eq!(write["/proc/sys/kernel/hostname"], "ENOENT");
    assert_eq!(write["/proc/sysrq-trigger"], "ENOENT");
    assert_eq!(write["/sys/kernel/profiling"], "ENOENT");
    for path in [
        "/proc/kcore",
        "/proc/kallsyms",
        "/proc/keys",
        "/proc/sysrq-trigger",
    ] {
        assert_eq!(got["read"][path], "ENOENT", "{path}");
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_hostname
    );
    // 7: the root, the runtime and the function's code are read-only.
    for path in [
        "/x",
        "/usr/x",
        "/etc/passwd",
        "/var/runtime/x",
        "/var/task/app.py",
        "/var/task/new",
        "/opt/x",
    ] {
        assert_eq!(write[path], "EROFS", "{path}");
    }
    // 8: no device nodes can be made; /dev holds the five harmless ones.
    assert_eq!(got["mknod"], "EPERM");
    assert_eq!(
        got["dev"],
        json!(["full", "null", "random", "urandom", "zero"])
    );
    // 13: the daemon's socket is not in the sandbox's filesystem.
    assert_eq!(got["daemon_socket"], "ENOENT");
    // The sandbox is the OOM killer's first choice.
    assert_eq!(got["oom_score_adj"], "1000");
    assert_eq!(got["rlimit_nofile"], json!([1024, 1024]));
    assert_eq!(got["rlimit_fsize"], json!([10240u64 << 20, 10240u64 << 20]));
}
root_test!(the_sandbox_from_inside);

/// 10: a never-legitimate syscall from the runtime's own process, with
/// SIGSYS ignored: killed, PolicyViolation, the sandbox is not reused.
fn never_legitimate_syscalls_are_policy_violations() {
    let daemon = start();
    let client = daemon.client();
    deploy(&client, "kill", "kill");
    deploy(&client, "bystander", "hello");
    let bystander = invoke(&client, "bystander", json!({}));
    ok(&bystander, &daemon);
    for syscall in ["bpf", "perf_event_open", "userfaultfd"] {
        let warm = invoke(&client, "kill", json!("hello"));
        ok(&warm, &daemon);
        let response = invoke(&client, "kill", json!(syscall));
        let (kind, message) = failed(&response);
        assert_eq!(kind, ErrorKind::PolicyViolation, "{syscall}: {message}");
        assert!(message.contains("SIGSYS"), "{message}");
        let next = invoke(&client, "kill", json!("hello"));
        ok(&next, &daemon);
        assert!(next.cold, "{syscall}: the violating sandbox is not reused");
        assert_ne!(next.sandbox, warm.sandbox, "{syscall}");
        assert!(
            cgroup_gone(&daemon, warm.sandbox),
            "{syscall}: its cgroup is gone"
        );
    }
    let again = invoke(&client, "bystander", json!({}));
    ok(&again, &daemon);
    assert_eq!(
        again.sandbox, bystander.sandbox,
        "other sandboxes are unaffected"
    );
}
root_test!(never_legitimate_syscalls_are_policy_violations);

/// 14: fork and thread bombs stop at pids.max; other sandboxes keep
/// working; nothing of the bomb outlives its sandbox.
fn fork_and_thread_bombs_stop_at_pids_max() {
    let daemon = start();
    let client = daemon.client();
    let instance = instance_of(&daemon.state);
    deploy(&client, "bystander", "hello");
    let bystander = invoke(&client, "bystander", json!({}));
    ok(&bystander, &daemon);
    deploy(&client, "forkbomb", "forkbomb");
    let got = ok(&invoke(&client, "forkbomb", json!({})), &daemon);
    assert_eq!(got["fork"], "EAGAIN", "{got}");
    let forked = got["forked"].as_u64().unwrap();
    assert!(forked > 0 && forked < 256, "{got}");
    // The bomb's children keep trying; the other function still answers
    // from its own sandbox.
    let again = invoke(&client, "bystander", json!({}));
    ok(&again, &daemon);
    assert_eq!(again.sandbox, bystander.sandbox);
    deploy(&client, "threadbomb", "threadbomb");
    let got = ok(&invoke(&client, "threadbomb", json!({})), &daemon);
    assert_eq!(got["thread"], "RuntimeError", "{got}");
    assert!(got["started"].as_u64().unwrap() < 256, "{got}");
    client.remove("forkbomb").unwrap();
    client.remove("threadbomb").unwrap();
    client.remove("bystander").unwrap();
    let mut daemon = daemon;
    daemon.stop();
    assert_eq!(wait_no_processes(&instance), Vec::<i32>::new());
    assert_eq!(daemon.cgroup_dirs(), Vec::<PathBuf>::new());
}
root_test!(fork_and_thread_bombs_stop_at_pids_max);

/// 15: several processes allocating together: OutOfMemory with the peak;
/// the OOM killer prefers the sandbox to the daemon, which keeps serving.
fn memory_bomb_of_several_processes() {
    let daemon = start();
    let client = daemon.client();
    client
        .deploy(&DeploySpec {
            memory_mb: Some(64),
            timeout_secs: Some(30),
            ..spec("membomb", "membomb")
        })
        .unwrap();
    let response = invoke(&client, "membomb", json!({}));
    let (kind, message) = failed(&response);
    assert_eq!(kind, ErrorKind::OutOfMemory, "{message}");
    assert!(
        message.contains("peak") && message.contains("64 MiB"),
        "{message}"
    );
    let daemon_adj: i32 = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", daemon.pid()))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        daemon_adj < 1000,
        "the daemon is never preferred: {daemon_adj}"
    );
    deploy(&client, "after", "hello");
    ok(&invoke(&client, "after", json!({})), &daemon);
}
root_test!(memory_bomb_of_several_processes);

/// 16: /tmp full of bytes or of inodes is ENOSPC inside and nothing on the
/// host; open files and file size hit their rlimits.
fn tmp_and_file_limits() {
    let daemon = start();
    let client = daemon.client();
    client
        .deploy(&DeploySpec {
            timeout_secs: Some(60),
            // /tmp (512 MiB) is memory-backed and counts against memory.
            memory_mb: Some(1024),
            ..spec("tmpfill", "tmpfill")
        })
        .unwrap();
    let marker = format!("sprout-adversarial-{}", std::process::id());
    let got = ok(
        &invoke(&client, "tmpfill", json!({ "marker": marker })),
        &daemon,
    );
    assert_eq!(got["space"], "ENOSPC", "{got}");
    assert!(got["written_mib"].as_u64().unwrap() <= 512, "{got}");
    assert_eq!(got["inodes"], "ENOSPC", "{got}");
    assert!(got["files"].as_u64().unwrap() <= 32768, "{got}");
    assert_eq!(got["nofile"], "EMFILE", "{got}");
    assert_eq!(got["fsize"], "EFBIG", "{got}");
    assert!(!Path::new("/tmp").join(&marker).exists());
    assert!(!daemon
        .state
        .join("rootfs/newroot/tmp")
        .join(&marker)
        .exists());
}
root_test!(tmp_and_file_limits);

/// 17: threads and processes spinning with SIGTERM ignored end at the
/// deadline as Timeout; their sandbox is gone.
fn cpu_spin_ignoring_sigterm_times_out() {
    let daemon = start();
    let client = daemon.client();
    let instance = instance_of(&daemon.state);
    client
        .deploy(&DeploySpec {
            timeout_secs: Some(1),
            ..spec("spin", "spin")
        })
        .unwrap();
    let response = invoke(&client, "spin", json!({}));
    let (kind, message) = failed(&response);
    assert_eq!(kind, ErrorKind::Timeout, "{message}");
    assert!(cgroup_gone(&daemon, response.sandbox));
    let spinning: Vec<i32> = sandbox_processes(&instance)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .contains("spin")
        })
        .collect();
    assert!(spinning.iter().all(|&pid| wait_gone(pid)), "{spinning:?}");
}
root_test!(cpu_spin_ignoring_sigterm_times_out);

/// 18: background processes, double-forked daemons and zombies stay in
/// their sandbox, are invisible to other functions, and die with it.
fn leftovers_die_with_their_sandbox() {
    let mut daemon = start();
    let client = daemon.client();
    let instance = instance_of(&daemon.state);
    deploy(&client, "orphans", "orphans");
    deploy(&client, "other", "hello");
    let left = ok(&invoke(&client, "orphans", json!({})), &daemon);
    let visible: Vec<u64> = serde_json::from_value(left["visible"].clone()).unwrap();
    for kind in ["daemon", "background", "zombie"] {
        let pid = left[kind].as_u64().unwrap();
        assert!(visible.contains(&pid), "{kind} {pid} in {visible:?}");
    }
    let other = ok(&invoke(&client, "other", json!({})), &daemon);
    assert_eq!(
        other["visible"],
        json!([other["pid"]]),
        "another function sees none of them, only itself"
    );
    // The leftovers live on in their sandbox until it is destroyed.
    let first = invoke(&client, "orphans", json!({ "then": "crash" }));
    assert_eq!(failed(&first).0, ErrorKind::RuntimeCrash);
    assert!(cgroup_gone(&daemon, first.sandbox), "crash");
    ok(&invoke(&client, "orphans", json!({})), &daemon);
    client.remove("orphans").unwrap();
    client.remove("other").unwrap();
    daemon.stop();
    assert_eq!(wait_no_processes(&instance), Vec::<i32>::new());
    assert_eq!(daemon.cgroup_dirs(), Vec::<PathBuf>::new());
}
root_test!(leftovers_die_with_their_sandbox);

/// 18: orphans re-parented to pid 1 are reaped while the sandbox lives,
/// so they never pile up against pids.max (256): three rounds of 100
/// double-forked processes in one sandbox all fork and all go.
fn orphans_are_reaped_while_the_sandbox_lives() {
    let daemon = start();
    let client = daemon.client();
    deploy(&client, "zombies", "zombies");
    let mut sandboxes = Vec::new();
    for round in 0..3 {
        let response = invoke(&client, "zombies", json!({ "n": 100 }));
        let got = ok(&response, &daemon);
        assert_eq!(got["orphans"], 100, "round {round}");
        assert_eq!(got["left"], json!({}), "round {round}: unreaped");
        sandboxes.push(response.sandbox);
    }
    sandboxes.dedup();
    assert_eq!(sandboxes.len(), 1, "one warm sandbox: {sandboxes:?}");
    // From the host: the reaper is sprout:init[ID], the runtime its only
    // child left.
    let procs = sandbox_cgroup_procs(&daemon, sandboxes[0]).unwrap();
    let stat = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let comm = |pid: i32| stat(pid).split(['(', ')']).nth(1).unwrap().to_owned();
    let ppid = |pid: i32| -> i32 {
        let stat = stat(pid);
        stat.rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    let reaper: Vec<i32> = procs
        .iter()
        .copied()
        .filter(|&p| comm(p) == format!("sprout:init[{}]", sandboxes[0]))
        .collect();
    assert_eq!(reaper.len(), 1, "{procs:?}");
    let children: Vec<i32> = procs
        .iter()
        .copied()
        .filter(|&p| ppid(p) == reaper[0])
        .collect();
    assert_eq!(children.len(), 1, "{procs:?}");
}
root_test!(orphans_are_reaped_while_the_sandbox_lives);

/// 19: stdout and stderr are captured, capped: 2 GiB written leave a log
/// of at most [`LOG_CAP`] that ends in one line counting exactly what was
/// dropped, and cost the daemon nothing. The log goes with the sandbox.
fn output_flood_is_capped() {
    let daemon = start();
    let client = daemon.client();
    client
        .deploy(&DeploySpec {
            timeout_secs: Some(120),
            ..spec("flood", "flood")
        })
        .unwrap();
    ok(&invoke(&client, "flood", json!({ "gib": 0 })), &daemon);
    let rss = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let before = rss();
    let response = invoke(&client, "flood", json!({ "gib": 1 }));
    assert_eq!(ok(&response, &daemon)["written_gib"], 2);
    let after = rss();
    assert!(
        after < before + 8 * 1024,
        "daemon RSS grew from {before} to {after} KiB"
    );
    let log = log_path(&daemon, response.sandbox);
    let written = 2u64 << 30;
    // The reaper may still be draining the pipe's last bytes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (kept, dropped, bytes) = loop {
        let bytes = std::fs::read(&log).unwrap();
        assert!(bytes.len() as u64 <= LOG_CAP, "{} bytes", bytes.len());
        let text = String::from_utf8(bytes).unwrap();
        let output = &text[..text.find("\n[output truncated").unwrap_or(text.len())];
        let kept = output.bytes().filter(|&b| b == b'y').count() as u64;
        let dropped: u64 = text
            .lines()
            .last()
            .and_then(|l| l.strip_prefix("[output truncated: "))
            .and_then(|l| l.strip_suffix(" bytes dropped]"))
            .map_or(0, |n| n.parse().unwrap());
        if kept + dropped >= written || Instant::now() > deadline {
            break (kept, dropped, text);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(kept + dropped, written);
    assert_eq!(bytes.matches("[output truncated").count(), 1);
    client.remove("flood").unwrap();
    assert!(wait_gone_path(&log), "the log goes with its sandbox");
}
root_test!(output_flood_is_capped);

/// 19: what a handler prints is in its sandbox's log while the sandbox
/// lives.
fn printed_lines_land_in_the_sandbox_log() {
    let daemon = start();
    let client = daemon.client();
    deploy(&client, "say", "say");
    let response = invoke(&client, "say", json!({ "line": "hello from inside" }));
    assert_eq!(ok(&response, &daemon), "said");
    let log = log_path(&daemon, response.sandbox);
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("(stderr)") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(text, "hello from inside\nhello from inside (stderr)\n");
    client.remove("say").unwrap();
    assert!(wait_gone_path(&log), "the log goes with its sandbox");
}
root_test!(printed_lines_land_in_the_sandbox_log);

/// STATE/logs/INSTANCE/sandbox-ID.log.
fn log_path(daemon: &Daemon, sandbox: u64) -> PathBuf {
    daemon
        .state
        .join("logs")
        .join(instance_of(&daemon.state))
        .join(format!("sandbox-{sandbox}.log"))
}

fn wait_gone_path(path: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while path.exists() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// 20: the runtime dying in any way mid-invocation is RuntimeCrash; the
/// sandbox is discarded and the next invocation works.
fn runtime_crashes_are_runtime_crash() {
    let daemon = start();
    let client = daemon.client();
    deploy(&client, "crash", "crash");
    deploy(&client, "hello", "hello");
    let warm = invoke(&client, "hello", json!({}));
    ok(&warm, &daemon);
    for how in ["segv", "abort", "exit", "exec"] {
        let response = invoke(&client, "crash", json!({ "how": how }));
        let (kind, message) = failed(&response);
        assert_eq!(kind, ErrorKind::RuntimeCrash, "{how}: {message}");
        assert!(cgroup_gone(&daemon, response.sandbox), "{how}");
        let next = invoke(&client, "hello", json!({}));
        ok(&next, &daemon);
        assert_eq!(
            next.sandbox, warm.sandbox,
            "{how}: other sandboxes unaffected"
        );
    }
    let response = invoke(&client, "crash", json!({ "how": "none" }));
    assert_eq!(
        failed(&response).0,
        ErrorKind::FunctionError,
        "the function still runs"
    );
}
root_test!(runtime_crashes_are_runtime_crash);

/// From the host: every sandbox runs as its own unprivileged uid, and a
/// destroyed sandbox leaves no process, cgroup or mount.
fn host_side_uids_and_leftovers() {
    let mut daemon = start();
    let instance = instance_of(&daemon.state);
    let client = std::sync::Arc::new(daemon.client());
    client.deploy(&spec("orphans", "orphans")).unwrap();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            std::thread::spawn(move || invoke(&client, "orphans", json!({})))
        })
        .collect();
    for thread in threads {
        ok(&thread.join().unwrap(), &daemon);
    }
    // A sandbox the pool is still creating keeps the daemon's credentials
    // until its init has been given its uid map (only sprout's own code
    // runs then): look once none is booting.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while client
        .stats(None)
        .unwrap()
        .daemon
        .pool
        .iter()
        .any(|p| p.booting > 0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the pool never settled"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut uids: BTreeMap<String, std::collections::BTreeSet<u32>> = BTreeMap::new();
    for pid in sandbox_processes(&instance) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let Some(sandbox) = cgroup
            .split(['/', '\n'])
            .find(|part| part.starts_with("sandbox-"))
        else {
            continue;
        };
        let Some(uid) = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|u| u.parse().ok())
        else {
            continue;
        };
        uids.entry(sandbox.to_owned()).or_default().insert(uid);
    }
    assert!(uids.len() >= 3, "{uids:?}");
    let mut seen = std::collections::BTreeSet::new();
    for (sandbox, set) in &uids {
        assert_eq!(set.len(), 1, "{sandbox}: one uid per sandbox, {set:?}");
        let uid = *set.iter().next().unwrap();
        assert_ne!(uid, 0, "{sandbox} runs as host root");
        assert!(seen.insert(uid), "{sandbox} shares uid {uid}");
    }
    client.remove("orphans").unwrap();
    drop(client);
    daemon.stop();
    assert_eq!(wait_no_processes(&instance), Vec::<i32>::new());
    assert_eq!(daemon.cgroup_dirs(), Vec::<PathBuf>::new());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let state = std::fs::canonicalize(&daemon.state).unwrap();
    assert!(
        !mounts.contains(state.to_str().unwrap()),
        "a mount of the state dir is left:\n{mounts}"
    );
}
root_test!(host_side_uids_and_leftovers);
