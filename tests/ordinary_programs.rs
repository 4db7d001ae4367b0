//! Ordinary programs run in real sandboxes under the seccomp policy: what
//! everyday code does works (chmod and exec in /tmp, shutil.copy2, alarms,
//! links, FIFOs, sqlite, subprocesses, threads), syscalls the policy does
//! not know fail with ENOSYS, privileged ones with EPERM, and a
//! never-legitimate one still ends the invocation in `PolicyViolation`.
//! The handlers are tests/fixtures/ordinary/app.py; each reports exact
//! outcomes, asserted here. x86_64 syscall numbers.
//!
//! One daemon per test, on the io_uring event loop; every test needs root.

mod common;

use common::*;
use serde_json::{json, Value};
use sprout::client::Client;
use sprout::protocol::{DeploySpec, ErrorKind};

fn deploy(client: &Client, name: &str, handler: &str) {
    let spec = DeploySpec {
        code: fixtures().join("ordinary"),
        ..python_spec(name, &format!("app.{handler}"))
    };
    client.deploy(&spec).expect("deploy");
}

fn invoke_ok(daemon: &Daemon, name: &str) -> Value {
    ok(
        &daemon.client().invoke(name, b"{}").expect("invoke"),
        daemon,
    )
}

/// Compares every check with its expected outcome and reports all the
/// differences at once.
fn assert_outcomes(got: &Value, expected: &[(&str, Value)]) {
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(name, want)| got.get(name) != Some(want))
        .map(|(name, want)| format!("{name}: expected {want}, got {:?}", got.get(name)))
        .collect();
    assert!(wrong.is_empty(), "{}\nall: {got:#}", wrong.join("\n"));
}

macro_rules! root_test {
    ($name:ident) => {
        #[test]
        fn $name() {
            if sprout::testing::require_root(concat!("ordinary_programs::", stringify!($name))) {
                super::$name();
            }
        }
    };
}

mod uring {
    root_test!(everyday_operations_work);
    root_test!(unknown_syscalls_get_enosys_and_privileged_ones_eperm);
    root_test!(never_legitimate_syscalls_are_still_policy_violations);
}

fn everyday_operations_work() {
    let daemon = Daemon::start("uring");
    deploy(&daemon.client(), "ordinary", "ordinary");
    let got = invoke_ok(&daemon, "ordinary");
    assert_outcomes(
        &got,
        &[
            // A script written to /tmp, made executable and run.
            ("chmod_and_run", json!(["0o755", "tool-ran x"])),
            // A binary copied with its mode, times and xattrs, then run.
            ("copy2_binary", json!([true, "copied"])),
            ("xattrs", json!([["user.sprout"], "1"])),
            // signal.alarm(1) interrupts time.sleep(10) after a second.
            ("alarm", json!(["fired", 1])),
            // setitimer wakes signal.pause; nothing is left armed.
            ("pause", json!(["woken", true, [0.0, 0.0]])),
            ("posix_timer", json!("fired")),
            ("timerfd", json!(1)),
            ("links", json!([2, "/tmp/link-target", "linked"])),
            ("statvfs", json!([255, true, true])),
            // A FIFO works; a device node is refused.
            ("fifo", json!([true, ["through the fifo"], "EPERM"])),
            ("mmap_msync", json!("msync")),
            ("subprocess_chain", json!("INNER")),
            ("cp_tar", json!([0, "", 0, "", "tree", "tree"])),
            // sendfile, copy_file_range, the set mtime, chown to an
            // unmapped uid, memfd, truncate, getrandom.
            (
                "files",
                json!([10, 10, 2_000_000_000u64, "EINVAL", "memfd", 3, 16]),
            ),
            ("sqlite", json!([["a", 1], ["b", 2]])),
            ("threads", json!([0, 1, 4, 9, 16])),
            ("process_and_pipe", json!([49, 0])),
            ("sysv_shm", json!("ok")),
        ],
    );
    // multiprocessing.Pool needs POSIX semaphores, which glibc keeps in
    // /dev/shm; the sandbox's /dev has no shm (Lambda's has none either).
    assert_eq!(got["pool"], json!("ENOENT"), "{got:#}");
}

fn unknown_syscalls_get_enosys_and_privileged_ones_eperm() {
    let daemon = Daemon::start("uring");
    deploy(&daemon.client(), "refused", "refused");
    let got = invoke_ok(&daemon, "refused");
    assert_outcomes(
        &got,
        &[
            ("unknown_1000", json!("ENOSYS")),
            ("clone3", json!("ENOSYS")),
            ("io_setup", json!("ENOSYS")),
            ("unshare_user", json!("EPERM")),
            ("mount", json!("EPERM")),
            ("setns", json!("EPERM")),
            ("keyctl", json!("EPERM")),
            ("ptrace_traceme", json!("EPERM")),
            ("sync", json!("EPERM")),
        ],
    );
}

fn never_legitimate_syscalls_are_still_policy_violations() {
    let daemon = Daemon::start("uring");
    let client = daemon.client();
    deploy(&client, "killed", "killed");
    let response = client.invoke("killed", b"{}").expect("invoke");
    let error = response.error.expect("bpf must not return");
    assert_eq!(error.kind, ErrorKind::PolicyViolation, "{}", error.message);
}
