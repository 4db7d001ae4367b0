use super::*;
use std::collections::BTreeMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Output};

const PROBE_ENV: &str = "SPROUT_SECCOMP_PROBE_RUNTIME";
const PROBE_ARGV_ENV: &str = "SPROUT_SECCOMP_PROBE_ARGV";
const SIGSYS: i32 = 31;

/// Runs `argv` in a re-executed copy of this test binary that installs
/// the `runtime` policy (after no_new_privs) and then execs `argv`.
fn run_confined(runtime: &str, argv: &[&str]) -> Output {
    let exe = std::env::current_exe().unwrap();
    Command::new(exe)
        .args([
            "--exact",
            "sandbox::seccomp::tests::probe_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROBE_ENV, runtime)
        .env(PROBE_ARGV_ENV, serde_json::to_string(argv).unwrap())
        .output()
        .unwrap()
}

/// Not a test on its own: the child half of [`run_confined`].
#[test]
#[ignore = "child process of the seccomp probe tests"]
fn probe_child() {
    let Some(runtime) = std::env::var_os(PROBE_ENV) else {
        eprintln!("probe_child only runs as the child of the seccomp probe tests");
        return;
    };
    let argv: Vec<String> = serde_json::from_str(&std::env::var(PROBE_ARGV_ENV).unwrap()).unwrap();
    let program = compile(runtime.to_str().unwrap()).unwrap();
    assert!(matches!(apply(&program), Err(SeccompError::NoNewPrivs)));
    nix::sys::prctl::set_no_new_privs().unwrap();
    apply(&program).unwrap();
    let err = Command::new(&argv[0]).args(&argv[1..]).exec();
    panic!("exec {argv:?}: {err}");
}

fn python(runtime: &str, code: &str) -> Output {
    let out = run_confined(runtime, &["/usr/bin/python3", "-c", code]);
    eprintln!("stdout: {}", String::from_utf8_lossy(&out.stdout));
    eprintln!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn policy_files_parse_and_every_entry_has_a_comment() {
    let mut files = vec![(BASE_FILE, BASE)];
    files.extend(RUNTIMES.iter().map(|(_, file, text)| (*file, *text)));
    for (file, text) in files {
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        let sections = json.as_object().unwrap();
        // A runtime may add nothing to the base policy.
        assert!(file != BASE_FILE || sections.len() == SECTIONS.len());
        for (layer, filter) in sections {
            let rules = filter["filter"].as_array().unwrap();
            assert!(!rules.is_empty(), "{file} {layer}");
            for rule in rules {
                let syscall = rule["syscall"].as_str().unwrap();
                let comment = rule["comment"].as_str().unwrap_or("");
                assert!(
                    !comment.trim().is_empty(),
                    "{file}: {syscall} lacks a comment"
                );
                for cond in rule["args"].as_array().into_iter().flatten() {
                    let comment = cond["comment"].as_str().unwrap_or("");
                    assert!(
                        !comment.trim().is_empty(),
                        "{file}: {syscall} arg lacks a comment"
                    );
                    if [
                        "ioctl",
                        "clone",
                        "socket",
                        "socketpair",
                        "personality",
                        "mknod",
                        "mknodat",
                    ]
                    .contains(&syscall)
                    {
                        assert_eq!(cond["type"], "dword", "{file}: {syscall} compares 32 bits");
                    }
                }
            }
        }
    }
}

#[test]
fn both_runtimes_compile_into_three_layers() {
    for runtime in ["python", "native"] {
        let program = compile(runtime).unwrap();
        let lens = program.layer_lens();
        assert_eq!(lens.len(), 3, "{runtime}");
        assert!(
            lens.iter().all(|&n| n > 3 && n <= MAX_INSNS),
            "{runtime}: {lens:?}"
        );
    }
    let err = compile("cobol").unwrap_err();
    assert!(matches!(err, SeccompError::UnknownRuntime { .. }), "{err}");
}

/// The policies name x86_64 syscalls; every name aarch64 lacks must be in
/// `NOT_ON_AARCH64`, or an aarch64 daemon would not start.
#[test]
fn policies_compile_for_aarch64_too() {
    for (runtime, file, text) in RUNTIMES {
        let merged = merge(
            runtime,
            parse(BASE_FILE, BASE).unwrap(),
            file,
            parse(file, text).unwrap(),
        )
        .unwrap();
        let program = compile_policy(runtime, merged, seccompiler::TargetArch::aarch64).unwrap();
        assert_eq!(program.layer_lens().len(), LAYERS.len());
    }
}

/// Every syscall the base policy refuses on purpose is written down in
/// the eperm, enosys or kill section, with a comment (checked above).
#[test]
fn refused_syscalls_are_written_down() {
    let base = parse(BASE_FILE, BASE).unwrap();
    let names = |section: &str| -> Vec<&str> {
        base[section]
            .filter
            .iter()
            .map(|r| r.syscall.as_str())
            .collect()
    };
    for syscall in [
        "mount", "unshare", "setns", "ptrace", "keyctl", "add_key", "setuid", "sync",
    ] {
        assert!(names("eperm").contains(&syscall), "{syscall}");
    }
    for syscall in [
        "clone3",
        "io_uring_setup",
        "io_setup",
        "vmsplice",
        "mincore",
    ] {
        assert!(names("enosys").contains(&syscall), "{syscall}");
    }
    for syscall in ["bpf", "perf_event_open", "userfaultfd", "init_module"] {
        assert!(names("kill").contains(&syscall), "{syscall}");
    }
}

#[test]
fn dangerous_syscalls_are_not_allowed_by_any_policy() {
    let denied = [
        "unshare",
        "setns",
        "mount",
        "umount2",
        "open_tree",
        "move_mount",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "mount_setattr",
        "pivot_root",
        "chroot",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "pidfd_getfd",
        "kcmp",
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "reboot",
        "swapon",
        "swapoff",
        "acct",
        "settimeofday",
        "clock_settime",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "clone3",
    ];
    for (runtime, file, text) in RUNTIMES {
        let merged = merge(
            runtime,
            parse(BASE_FILE, BASE).unwrap(),
            file,
            parse(file, text).unwrap(),
        )
        .unwrap();
        for rule in &merged["allow"].filter {
            assert!(
                !denied.contains(&rule.syscall.as_str()),
                "{runtime} allows {}",
                rule.syscall
            );
        }
    }
}

#[test]
fn merge_rejects_duplicates_and_allowing_killed_syscalls() {
    let base = || parse(BASE_FILE, BASE).unwrap();
    let extra = |rules: &str| {
        parse(
                "test.json",
                &format!(r#"{{"allow": {{"mismatch_action": {{"errno": 1}}, "match_action": "allow", "filter": [{rules}]}}}}"#),
            )
            .unwrap()
    };
    let dup = extra(r#"{"syscall": "read", "comment": "again"}"#);
    let err = merge("python", base(), "test.json", dup).unwrap_err();
    assert!(
        matches!(&err, SeccompError::Duplicate { syscall, .. } if syscall == "read"),
        "{err}"
    );

    let killed = extra(r#"{"syscall": "bpf", "comment": "no"}"#);
    let err = merge("python", base(), "test.json", killed).unwrap_err();
    assert!(
        err.to_string()
            .contains("bpf is in both the allow and the kill sections"),
        "{err}"
    );
    let refused = extra(r#"{"syscall": "mount", "comment": "no"}"#);
    let err = merge("python", base(), "test.json", refused).unwrap_err();
    assert!(
        err.to_string()
            .contains("mount is in both the allow and the eperm sections"),
        "{err}"
    );

    // Conditional entries of one syscall are alternatives: allowed.
    let more_ioctl = extra(
        r#"{"syscall": "ioctl", "comment": "x", "args": [{"index": 1, "type": "dword", "op": "eq", "val": 21520, "comment": "TIOCGPGRP"}]}"#,
    );
    merge("python", base(), "test.json", more_ioctl).unwrap();

    let err = parse("test.json", r#"{"allow": {"mismatch_action": "allow", "match_action": "allow", "filter": [{"syscall": "read"}]}}"#)
            .unwrap_err();
    assert!(
        matches!(err, SeccompError::Parse { .. }),
        "comment is mandatory: {err}"
    );
}

#[test]
fn program_bytes_round_trip_and_reject_garbage() {
    let program = compile("python").unwrap();
    let bytes = program.to_bytes();
    assert_eq!(SeccompProgram::from_bytes(&bytes).unwrap(), program);
    assert!(SeccompProgram::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(SeccompProgram::from_bytes(&extra).is_err());
    assert!(SeccompProgram::from_bytes(b"SPSC\x01\0\0\0\xff\xff\xff\xff").is_err());
    let mut huge = bytes[..12].to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(SeccompProgram::from_bytes(&huge).is_err());
    assert!(SeccompProgram::from_bytes(b"").is_err());
}

#[test]
fn python_stdlib_runs_under_the_python_policy() {
    if !crate::testing::require_root("seccomp::python_stdlib_runs_under_the_python_policy") {
        return;
    }
    let code = r#"
import json, socket, threading, hashlib, random, os, subprocess, tempfile
out = []
t = threading.Thread(target=lambda: out.append(hashlib.sha256(b"x").hexdigest()))
t.start(); t.join()
a, b = socket.socketpair(socket.AF_UNIX)
a.sendall(json.dumps({"n": random.randint(1, 9)}).encode()); assert json.loads(b.recv(100))["n"] > 0
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.close()
assert os.listdir("/usr")
with tempfile.TemporaryFile() as f: f.write(b"x")
assert subprocess.run(["/usr/bin/true"]).returncode == 0
assert len(out) == 1
print("stdlib-ok")
"#;
    let out = python("python", code);
    assert!(out.status.success(), "{:?}", out.status);
    // The harness of the re-executed test binary prints its own lines first.
    assert!(String::from_utf8_lossy(&out.stdout)
        .trim_end()
        .ends_with("stdlib-ok"));
}

/// Escape probes: each syscall must fail with the exact errno.
#[test]
fn forbidden_syscalls_fail_with_the_exact_errno() {
    if !crate::testing::require_root("seccomp::forbidden_syscalls_fail_with_the_exact_errno") {
        return;
    }
    let code = r#"
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) for a in args])
    return "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]
TCGETS, TIOCSTI = 0x5401, 0x5412
BAD_FD = (1 << 64) - 1
res = {
  "unshare_user": sc(272, 0x10000000),
  "mount": sc(165, 0, 0, 0, 0, 0),
  "setns": sc(308, 0, 0),
  "clone3": sc(435, 0, 0),
  "io_uring_setup": sc(425, 1, 0),
  "ptrace": sc(101, 2, 0, 0, 0),
  "socket_packet": sc(41, 17, 3, 0),
  "socket_packet_high_bits": sc(41, (1 << 32) | 17, 3, 0),
  "socket_alg": sc(41, 38, 5, 0),
  "socket_vsock": sc(41, 40, 1, 0),
  "socket_inet_raw": sc(41, 2, 3, 1),
  "socket_inet6_raw_cloexec": sc(41, 10, 3 | 0x80000 | 0x800, 58),
  "socket_inet_raw_high_bits": sc(41, 2, (1 << 32) | 3, 1),
  "socket_inet_ping": sc(41, 2, 2, 1),
  "socket_inet_tcp_flags": sc(41, 2, 1 | 0x80000 | 0x800, 0),
  "socket_inet6_udp": sc(41, 10, 2, 17),
  "clone_newuser": sc(56, 0x10000000 | 17, 0, 0, 0, 0),
  "ioctl_tiocsti": sc(16, 0xffffffff, TIOCSTI, 0),
  "ioctl_tiocsti_high_bits": sc(16, 0xffffffff, (1 << 32) | TIOCSTI, 0),
  "ioctl_tcgets": sc(16, 0xffffffff, TCGETS, 0),
  "ioctl_tcgets_high_bits": sc(16, 0xffffffff, (1 << 32) | TCGETS, 0),
  "personality_query": sc(135, 0xffffffff),
  "personality_no_aslr": sc(135, 0x0040000),
  "prlimit_set": sc(302, 0, 7, 1, 0),
  "x32_getpid": sc(0x40000000 | 39),
  "getpid": sc(39),
  "unknown_1000": sc(1000),
  "io_setup": sc(206, 1, 8),
  "sync": sc(162),
  "setuid": sc(105, 0),
  "alarm": sc(37, 0),
  "chmod": sc(90, 8, 0o755),
  "setxattr": sc(188, 8, 8, 8, 1, 0),
  "mknodat_fifo": sc(259, BAD_FD, 8, 0o10600, 0),
  "mknodat_chr": sc(259, BAD_FD, 8, 0o20600, 0x0101),
  "mknodat_chr_high_bits": sc(259, BAD_FD, 8, (1 << 32) | 0o20600, 0x0101),
  "mknod_blk": sc(133, 8, 0o60600, 0x0101),
  "ioctl_tiocgpgrp": sc(16, 0xffffffff, 0x540f, 0),
  "prctl_get_pdeathsig": sc(157, 2, 8),
  "prctl_set_mm": sc(157, 35, 0, 0, 0, 0),
  "seccomp_strict": sc(317, 0, 0, 0),
  "landlock_bad_size": sc(444, 8, 0, 0),
  "newest_463": sc(463, 0, 0, 0, 0, 0),
}
print(" ".join(f"{k}={v}" for k, v in res.items()))
"#;
    let out = python("python", code);
    assert!(out.status.success(), "{:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let got: BTreeMap<&str, &str> = stdout
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let expected = [
        ("unshare_user", "EPERM"),
        ("mount", "EPERM"),
        ("setns", "EPERM"),
        ("clone3", "ENOSYS"),
        ("io_uring_setup", "ENOSYS"),
        ("ptrace", "EPERM"),
        ("socket_packet", "EPERM"),
        ("socket_packet_high_bits", "EPERM"),
        ("socket_alg", "EPERM"),
        ("socket_vsock", "EPERM"),
        ("socket_inet_raw", "EPERM"),
        ("socket_inet6_raw_cloexec", "EPERM"),
        ("socket_inet_raw_high_bits", "EPERM"),
        ("socket_inet_ping", "EPERM"),
        ("socket_inet_tcp_flags", "ok"),
        ("socket_inet6_udp", "ok"),
        ("clone_newuser", "EPERM"),
        ("ioctl_tiocsti", "EPERM"),
        ("ioctl_tiocsti_high_bits", "EPERM"),
        // Allowed commands reach the kernel, which rejects the bad fd.
        ("ioctl_tcgets", "EBADF"),
        ("ioctl_tcgets_high_bits", "EBADF"),
        ("personality_query", "ok"),
        ("personality_no_aslr", "EPERM"),
        ("prlimit_set", "EPERM"),
        // Known to no section: ENOSYS, as on a kernel without them.
        ("x32_getpid", "ENOSYS"),
        ("getpid", "ok"),
        ("unknown_1000", "ENOSYS"),
        ("io_setup", "ENOSYS"),
        ("sync", "EPERM"),
        ("setuid", "EPERM"),
        ("alarm", "ok"),
        // Allowed: the kernel rejects the bad pointer.
        ("chmod", "EFAULT"),
        ("setxattr", "EFAULT"),
        ("mknodat_fifo", "EFAULT"),
        ("mknodat_chr", "EPERM"),
        ("mknodat_chr_high_bits", "EPERM"),
        ("mknod_blk", "EPERM"),
        ("ioctl_tiocgpgrp", "EBADF"),
        ("prctl_get_pdeathsig", "EFAULT"),
        ("prctl_set_mm", "EPERM"),
        // The highest-numbered argument-checked syscall, refused: EPERM.
        ("seccomp_strict", "EPERM"),
        // The highest-numbered allowed syscall reaches the kernel.
        ("landlock_bad_size", "EINVAL"),
        ("newest_463", "ENOSYS"),
    ];
    for (probe, errno) in expected {
        assert_eq!(got.get(probe).copied(), Some(errno), "{probe}: {stdout}");
    }
}

#[test]
fn never_legitimate_syscalls_kill_the_process() {
    if !crate::testing::require_root("seccomp::never_legitimate_syscalls_kill_the_process") {
        return;
    }
    for (name, nr) in [("bpf", 321), ("perf_event_open", 298), ("init_module", 175)] {
        let code = format!(
                "import ctypes, sys\nprint('reached', flush=True)\nctypes.CDLL(None).syscall({nr}, 0, 0, 0)\nprint('survived')"
            );
        let out = python("python", &code);
        assert_eq!(
            out.status.signal(),
            Some(SIGSYS),
            "{name}: {:?}",
            out.status
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.trim_end().ends_with("reached"), "{name}: {stdout}");
    }
}

#[test]
fn native_policy_runs_a_plain_binary() {
    if !crate::testing::require_root("seccomp::native_policy_runs_a_plain_binary") {
        return;
    }
    let out = run_confined("native", &["/usr/bin/ls", "/usr"]);
    assert!(
        out.status.success(),
        "{:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("bin"));
}
