//! Seccomp policies as data, compiled to BPF once per daemon start.
//!
//! The policies live beside the runtimes in seccompiler's JSON format:
//! `runtimes/base.seccomp.json` (what every runtime needs) and
//! `runtimes/<runtime>/seccomp.json` (that runtime's additions). They are
//! embedded in the binary, merged per runtime by [`compile`], and installed
//! by the sandbox init right before it execs the runtime ([`apply`]).
//!
//! A program is three filter layers, installed in this order:
//!
//! 1. `kill`: KILL_PROCESS for syscalls no sandbox ever needs (bpf,
//!    perf_event_open, module and kexec calls...), everything else ALLOW.
//! 2. `allow`: the allowlist; anything not on it fails with EPERM so
//!    runtimes fail cleanly instead of dying.
//! 3. `enosys`: ENOSYS for clone3 and io_uring_setup (so glibc falls back
//!    to clone(2) and runtimes to epoll), everything else ALLOW.
//!
//! The kernel runs every attached filter and keeps the result with the
//! highest precedence (KILL_PROCESS > ... > ERRNO > ... > ALLOW); among
//! results of the same action the most recently installed filter wins
//! (`seccomp_run_filters` walks from the newest filter and only replaces
//! its result on a strictly higher precedence). So for clone3 the `allow`
//! layer's ERRNO(EPERM) and the later `enosys` layer's ERRNO(ENOSYS) tie,
//! and ENOSYS wins because `enosys` is installed last. The `allow` layer
//! therefore permits `seccomp(SECCOMP_SET_MODE_FILTER)` and
//! `prctl(PR_SET_NO_NEW_PRIVS)`, which installing the last layer needs.
//!
//! Architecture: seccompiler prefixes each filter with a check of
//! `seccomp_data.arch` and kills the process on any other ABI (i386 via
//! int 0x80 on x86_64, arm32 on aarch64). x32 syscalls report
//! AUDIT_ARCH_X86_64 too but carry `__X32_SYSCALL_BIT` (0x40000000) in
//! their number; seccompiler matches exact numbers, so an x32 number never
//! matches an allowlist entry and gets the `allow` layer's EPERM (tested).

#![deny(unsafe_code)]

use nix::errno::Errno;
use seccompiler::BpfProgram;

#[path = "seccomp_policy.rs"]
mod seccomp_policy;
use seccomp_policy::{compile_policy, merge, parse};

const BASE_FILE: &str = "runtimes/base.seccomp.json";
const BASE: &str = include_str!("../../runtimes/base.seccomp.json");
/// Each runtime's name, policy file and embedded policy.
const RUNTIMES: [(&str, &str, &str); 3] = [
    (
        "python",
        "runtimes/python/seccomp.json",
        include_str!("../../runtimes/python/seccomp.json"),
    ),
    (
        "native",
        "runtimes/native/seccomp.json",
        include_str!("../../runtimes/native/seccomp.json"),
    ),
    (
        "provided",
        "runtimes/provided/seccomp.json",
        include_str!("../../runtimes/provided/seccomp.json"),
    ),
];

/// Filter layers in install order (see the module docs for why).
const LAYERS: [&str; 3] = ["kill", "allow", "enosys"];
/// The kernel's limit on instructions per filter (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;
const MAGIC: &[u8; 4] = b"SPSC";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("unknown runtime {runtime:?} (known: python, native, provided)")]
    UnknownRuntime { runtime: String },
    #[error("parse seccomp policy {file}")]
    Parse {
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("seccomp policy {file}: {reason}")]
    Policy { file: &'static str, reason: String },
    #[error("seccomp policy for {runtime}: syscall {syscall} is allowed unconditionally and listed again (hint: an unconditional entry would silently turn into the conditional ones; keep one entry)")]
    Duplicate {
        runtime: &'static str,
        syscall: String,
    },
    #[error("compile seccomp policy for {runtime}")]
    Compile {
        runtime: &'static str,
        #[source]
        source: seccompiler::Error,
    },
    #[error("seccomp policies are built for x86_64 and aarch64, not {arch}")]
    UnsupportedArch { arch: &'static str },
    #[error("decode seccomp program: {reason}")]
    Decode { reason: &'static str },
    #[error("read no_new_privs")]
    GetNoNewPrivs {
        #[source]
        source: Errno,
    },
    #[error("no_new_privs is not set (hint: the sandbox init must call prctl(PR_SET_NO_NEW_PRIVS) before installing seccomp)")]
    NoNewPrivs,
    #[error("install seccomp filter layer {layer} (hint: this needs a kernel with CONFIG_SECCOMP_FILTER)")]
    Install {
        layer: &'static str,
        #[source]
        source: seccompiler::Error,
    },
}

/// A compiled policy: BPF filter layers in install order. Built once per
/// daemon start and runtime, handed to each sandbox init as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompProgram {
    layers: Vec<BpfProgram>,
}

impl SeccompProgram {
    /// Serialises the program: `SPSC`, format version, layer count, then
    /// per layer its instruction count and `sock_filter`s (code u16, jt u8,
    /// jf u8, k u32), all little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let insns: usize = self.layers.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(12 + 4 * self.layers.len() + 8 * insns);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.layers.len() as u32).to_le_bytes());
        for layer in &self.layers {
            out.extend_from_slice(&(layer.len() as u32).to_le_bytes());
            for insn in layer {
                out.extend_from_slice(&insn.code.to_le_bytes());
                out.push(insn.jt);
                out.push(insn.jf);
                out.extend_from_slice(&insn.k.to_le_bytes());
            }
        }
        out
    }

    /// Parses [`Self::to_bytes`] output; every count is checked before it
    /// is used, so bad bytes give an error, never a huge allocation.
    pub fn from_bytes(bytes: &[u8]) -> Result<SeccompProgram, SeccompError> {
        let mut rest = bytes;
        let magic = take(&mut rest, 4)?;
        if magic != MAGIC {
            return Err(SeccompError::Decode {
                reason: "bad magic",
            });
        }
        if take_u32(&mut rest)? != FORMAT_VERSION {
            return Err(SeccompError::Decode {
                reason: "unsupported format version",
            });
        }
        let count = take_u32(&mut rest)? as usize;
        if count == 0 || count > LAYERS.len() {
            return Err(SeccompError::Decode {
                reason: "bad layer count",
            });
        }
        let mut layers = Vec::with_capacity(count);
        for _ in 0..count {
            let len = take_u32(&mut rest)? as usize;
            if len == 0 || len > MAX_INSNS {
                return Err(SeccompError::Decode {
                    reason: "bad instruction count",
                });
            }
            let raw = take(&mut rest, len * 8)?;
            let layer = raw
                .chunks_exact(8)
                .map(|c| seccompiler::sock_filter {
                    code: u16::from_le_bytes([c[0], c[1]]),
                    jt: c[2],
                    jf: c[3],
                    k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                })
                .collect();
            layers.push(layer);
        }
        if !rest.is_empty() {
            return Err(SeccompError::Decode {
                reason: "trailing bytes",
            });
        }
        Ok(SeccompProgram { layers })
    }

    /// Instructions per layer, in install order.
    pub fn layer_lens(&self) -> Vec<usize> {
        self.layers.iter().map(Vec::len).collect()
    }
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], SeccompError> {
    if rest.len() < n {
        return Err(SeccompError::Decode {
            reason: "truncated",
        });
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, SeccompError> {
    let b = take(rest, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Compiles the policy of `runtime` (`"python"` or `"native"`): the base
/// policy plus the runtime's additions, merged per layer.
pub fn compile(runtime: &str) -> Result<SeccompProgram, SeccompError> {
    let (name, file, text) = RUNTIMES
        .iter()
        .find(|(name, _, _)| *name == runtime)
        .ok_or_else(|| SeccompError::UnknownRuntime {
            runtime: runtime.to_owned(),
        })?;
    let merged = merge(name, parse(BASE_FILE, BASE)?, file, parse(file, text)?)?;
    let program = compile_policy(name, merged)?;
    tracing::debug!(runtime = name, insns = ?program.layer_lens(), "seccomp policy compiled");
    Ok(program)
}

/// Installs the program on the calling thread, layer by layer. Call it in
/// the single-threaded sandbox init, after no_new_privs and right before
/// exec: nothing after it allocates except on the error path.
pub fn apply(program: &SeccompProgram) -> Result<(), SeccompError> {
    let nnp = nix::sys::prctl::get_no_new_privs()
        .map_err(|source| SeccompError::GetNoNewPrivs { source })?;
    if !nnp {
        return Err(SeccompError::NoNewPrivs);
    }
    for (layer, bpf) in LAYERS.iter().zip(&program.layers) {
        seccompiler::apply_filter(bpf).map_err(|source| SeccompError::Install { layer, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
        let argv: Vec<String> =
            serde_json::from_str(&std::env::var(PROBE_ARGV_ENV).unwrap()).unwrap();
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
            let layers = json.as_object().unwrap();
            assert!(!layers.is_empty(), "{file}");
            for (layer, filter) in layers {
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
                        if ["ioctl", "clone", "socket", "socketpair", "personality"]
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
                .contains("bpf is both allowed and in the kill layer"),
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
            ("x32_getpid", "EPERM"),
            ("getpid", "ok"),
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
}
