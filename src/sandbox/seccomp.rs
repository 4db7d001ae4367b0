//! Seccomp policies as data, compiled to BPF once per daemon start.
//!
//! The policies live beside the runtimes in seccompiler's JSON format:
//! `runtimes/base.seccomp.json` (what any ordinary program needs) and
//! `runtimes/<runtime>/seccomp.json` (that runtime's additions, often
//! none). They are embedded in the binary, merged per runtime by
//! [`compile`], and installed by the sandbox init right before it execs
//! the runtime ([`apply`]).
//!
//! A policy file has four sections, each a seccompiler filter and each
//! naming a syscall at most once (bar alternative argument matches in
//! `allow`), every entry with a comment saying why:
//!
//! - `kill`: KILL_PROCESS for syscalls no sandbox ever needs (bpf,
//!   perf_event_open, module and kexec calls...);
//! - `allow`: the allowlist; a syscall it names whose arguments match none
//!   of its entries fails with EPERM (a socket of a refused family, an
//!   ioctl of a refused command, a device node);
//! - `eperm`: syscalls refused on purpose with EPERM, mostly privileged
//!   operations (mount, unshare, ptrace, keyctl...);
//! - `enosys`: syscalls refused on purpose with ENOSYS, so that callers
//!   take their fallback (clone3 → clone, io_uring → epoll, Linux AIO →
//!   threads).
//!
//! Every other syscall, unknown to the policy, fails with ENOSYS as on a
//! kernel that lacks it, which is what libc's fallbacks look for.
//!
//! The compiled program is three filter layers, installed in this order:
//!
//! 1. `kill`: the `kill` section, everything else ALLOW.
//! 2. `allow`: the `allow` section; a syscall it names with refused
//!    arguments gets its mismatch action, ERRNO(EPERM), and a syscall it
//!    does not name gets the `enosys` section's action, ERRNO(ENOSYS)
//!    (seccompiler gives a filter one mismatch action for both, so
//!    [`compile`] sets the second on the compiled layer).
//! 3. `eperm`: the `eperm` section, everything else ALLOW.
//!
//! The `enosys` section needs no layer: its syscalls are simply not named.
//! The kernel runs every attached filter and keeps the result with the
//! highest precedence (KILL_PROCESS > ... > ERRNO > ... > ALLOW); among
//! results of the same action the most recently installed filter wins
//! (`seccomp_run_filters` walks from the newest filter and only replaces
//! its result on a strictly higher precedence). So a syscall in `eperm`
//! gets ENOSYS from `allow` (which does not name it) and EPERM from
//! `eperm`, and EPERM wins because `eperm` is installed last. The `allow`
//! layer therefore permits `seccomp(SECCOMP_SET_MODE_FILTER)` and
//! `prctl(PR_SET_NO_NEW_PRIVS)`, which installing the last layer needs.
//!
//! Cost: the kernel (5.11+) caches, per syscall number, whether every
//! filter allows it whatever its arguments; those syscalls (read, write,
//! futex, mmap... nearly all of a program's calls) then run no filter at
//! all, however long the filters are. Only argument-checked syscalls
//! (clone, ioctl, socket, prctl, mknod...) and refused ones run the
//! layers, each a linear chain ordered by syscall number. Installing the
//! layers (the kernel builds that cache then) and running them for a
//! refused syscall are timed in docs/threat-model.md.
//!
//! Architecture: seccompiler prefixes each filter with a check of
//! `seccomp_data.arch` and kills the process on any other ABI (i386 via
//! int 0x80 on x86_64, arm32 on aarch64). x32 syscalls report
//! AUDIT_ARCH_X86_64 too but carry `__X32_SYSCALL_BIT` (0x40000000) in
//! their number; seccompiler matches exact numbers, so an x32 number is
//! named in no section and gets ENOSYS (tested).

#![deny(unsafe_code)]

use nix::errno::Errno;
use seccompiler::BpfProgram;

mod policy;
use policy::{compile_policy, merge, parse, target_arch};

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

/// Sections of a policy file (see the module docs).
const SECTIONS: [&str; 4] = ["kill", "allow", "eperm", "enosys"];
/// Compiled filter layers in install order (see the module docs for why).
const LAYERS: [&str; 3] = ["kill", "allow", "eperm"];
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
    #[error("seccomp policy for {runtime}: syscall {syscall} is listed unconditionally in the {section} section and listed there again (hint: an unconditional entry would silently turn into the conditional ones; keep one entry)")]
    Duplicate {
        runtime: &'static str,
        section: String,
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
/// policy plus the runtime's additions, merged per section.
pub fn compile(runtime: &str) -> Result<SeccompProgram, SeccompError> {
    let (name, file, text) = RUNTIMES
        .iter()
        .find(|(name, _, _)| *name == runtime)
        .ok_or_else(|| SeccompError::UnknownRuntime {
            runtime: runtime.to_owned(),
        })?;
    let merged = merge(name, parse(BASE_FILE, BASE)?, file, parse(file, text)?)?;
    let program = compile_policy(name, merged, target_arch()?)?;
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
mod tests;
