//! Creating and confining one sandbox.
//!
//! The daemon side ([`SandboxEnv::spawn`], in `spawn.rs`) creates the
//! cgroup, clones the child into fresh user, pid, mount, net, ipc and uts
//! namespaces, writes its id maps and hands it its configuration. The child
//! re-executes the sprout binary as `sprout-sandbox-init` ([`init_main`]),
//! which runs [`confine::confine`] — one linear function whose order is the
//! security argument — and then forks: the child execs the runtime
//! (`runtime.rs`), pid 1 stays as its reaper and drains its output into
//! the sandbox's capped log (`reaper.rs`, `output.rs`).
//!
//! Files: `spawn.rs` (daemon side of creation), `handle.rs` ([`Sandbox`]),
//! `env.rs` ([`SandboxEnv`], prepared once per daemon), `etc.rs` (the
//! curated /etc), `config.rs` (what the daemon sends the init), `init.rs`,
//! `confine.rs`, `namespaces.rs`, `rootfs.rs`, `rlimits.rs`, `caps.rs`,
//! `runtime.rs` (exec of the runtime, native loader), `code.rs`
//! ([`open_code_mount`]), `package.rs` (/var/task, /opt and /tmp, mounted
//! by the daemon after confinement and propagated in), `cgroup.rs`, `seccomp.rs`, `host.rs` (host
//! settings the daemon checks, OOM killer preferences).

#![deny(unsafe_code)]

pub mod cgroup;
pub mod host;
pub mod seccomp;

mod caps;
mod code;
mod config;
mod confine;
mod env;
mod etc;
mod handle;
mod init;
mod namespaces;
mod output;
mod package;
mod reaper;
mod rlimits;
mod rootfs;
mod runtime;
mod spawn;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use cgroup::MemoryReport;
pub use code::open_code_mount;
pub use confine::{ConfineError, Step};
pub use env::SandboxEnv;
pub use handle::Sandbox;
pub use init::init_main;
pub use output::LOG_CAP;
pub use package::{Package, PackageMounts};

/// The language runtime a sandbox runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// A Rust binary linked against `sprout-runtime`, exec'd from the
    /// function's code directory (`bootstrap`).
    Native,
    /// `/usr/bin/python3 -I` running the bootstrap in runtimes/python.
    Python,
    /// AWS Lambda's OS-only runtime: the function's `bootstrap` (any
    /// language) talks to the Lambda Runtime API, which the sandbox serves
    /// on 127.0.0.1:9001 and bridges to the ring (`crate::runtime_api`).
    Provided,
}

impl RuntimeKind {
    pub fn all() -> [RuntimeKind; 3] {
        [
            RuntimeKind::Native,
            RuntimeKind::Python,
            RuntimeKind::Provided,
        ]
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Native => "native",
            RuntimeKind::Python => "python",
            RuntimeKind::Provided => "provided",
        }
    }

    /// The short tag used in process names (`sprout:py[12]`).
    pub(crate) fn tag(self) -> &'static str {
        match self {
            RuntimeKind::Native => "native",
            RuntimeKind::Python => "py",
            RuntimeKind::Provided => "rapi",
        }
    }

    /// Parse a runtime name as `sprout deploy --runtime` takes it: the
    /// stored names, and Lambda's names for the same runtimes
    /// (`python3.N` for the host's Python 3.N, `provided.al2`,
    /// `provided.al2023`). `host_python` is the host's `python3.N`, if
    /// known.
    pub fn parse_name(name: &str, host_python: Option<&str>) -> Result<RuntimeKind, String> {
        match name {
            "native" => return Ok(RuntimeKind::Native),
            "python" => return Ok(RuntimeKind::Python),
            "provided" | "provided.al2" | "provided.al2023" => return Ok(RuntimeKind::Provided),
            _ => {}
        }
        if name.starts_with("python3.") {
            return match host_python {
                Some(host) if host == name => Ok(RuntimeKind::Python),
                Some(host) => Err(format!(
                    "runtime {name:?} is not available: the host's python is {host} (deploy with --runtime {host} or python)"
                )),
                None => Err(format!(
                    "runtime {name:?} is not available: the host's python version is unknown (/usr/bin/python3 is not a link to python3.N; deploy with --runtime python)"
                )),
            };
        }
        if name.starts_with("nodejs") {
            return Err(format!(
                "runtime {name:?} is not supported yet (supported: {})",
                Self::names(host_python)
            ));
        }
        Err(format!(
            "unknown runtime {name:?} (expected one of: {})",
            Self::names(host_python)
        ))
    }

    /// Every accepted runtime name, for error messages.
    fn names(host_python: Option<&str>) -> String {
        let python = host_python.map(|p| format!(", {p}")).unwrap_or_default();
        format!("native, python{python}, provided, provided.al2, provided.al2023")
    }
}

/// The host's Python as Lambda names it (`python3.11`), read from where
/// `/usr/bin/python3` links (the sandboxes run that interpreter); `None`
/// when it is not a link to `python3.N`. Read once.
pub fn host_python() -> Option<&'static str> {
    static HOST: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let target = std::fs::read_link("/usr/bin/python3").ok()?;
        let name = target.file_name()?.to_str()?.to_owned();
        let minor = name.strip_prefix("python3.")?;
        (!minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())).then_some(name)
    })
    .as_deref()
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RuntimeKind {
    type Err = String;

    /// [`RuntimeKind::parse_name`] with the host's Python.
    fn from_str(s: &str) -> Result<RuntimeKind, String> {
        RuntimeKind::parse_name(s, host_python())
    }
}

/// Resource limits of one sandbox: cgroup (memory, pids, cpu) and rlimits.
/// (Its /tmp is sized per function, see [`Package`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_bytes: u64,
    pub pids_max: u64,
    pub cpu_shares: u64,
    /// CPU time per wall-clock time, in thousandths of a CPU (the cgroup's
    /// CFS quota).
    pub cpu_millis: u64,
    pub nofile: u64,
    pub fsize_bytes: u64,
}

/// Memory that buys one whole CPU, as on AWS Lambda (1769 MB = 1 vCPU).
pub const MB_PER_CPU: u64 = 1769;
/// The least CPU a sandbox gets, in thousandths: half a CPU, so a 128 MB
/// python function still starts in reasonable time (Lambda's ratio alone
/// would give it 0.07 CPU). docs/threat-model.md explains the choice.
pub const MIN_CPU_MILLIS: u64 = 500;

impl Limits {
    /// Defaults for a memory class: pids 256, cpu shares 1024 per GiB (at
    /// least 128), a CPU quota of memory / 1769 MB CPUs (at least
    /// [`MIN_CPU_MILLIS`]), 1024 files, 10 GiB per file.
    pub fn for_memory_mb(mb: u32) -> Limits {
        let mb = u64::from(mb.max(1));
        Limits {
            memory_bytes: mb << 20,
            pids_max: 256,
            cpu_shares: (mb * 1024 / 1024).max(128),
            cpu_millis: (mb * 1000 / MB_PER_CPU).max(MIN_CPU_MILLIS),
            nofile: 1024,
            // The largest /tmp (10240 MB): only /tmp is writable, and its
            // own size bounds every file in it.
            fsize_bytes: 10240 << 20,
        }
    }

    pub(crate) fn cgroup(&self) -> cgroup::CgroupLimits {
        cgroup::CgroupLimits {
            memory_bytes: self.memory_bytes,
            pids_max: self.pids_max,
            cpu_shares: self.cpu_shares,
            cpu_millis: self.cpu_millis,
        }
    }
}

/// What a pooled sandbox is told when it is given a function: the ring's
/// contract type (runtimes/README.md), sent with the code directory's
/// descriptor on the control socket, fd 6.
pub use crate::ring::Assignment;

/// Failures on the daemon side of a sandbox's life.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("create state directory {}", path.display())]
    StateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("assemble the sandbox /etc in {}", path.display())]
    PrepareEtc {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write the {runtime} runtime files to {}", path.display())]
    PrepareRuntime {
        runtime: RuntimeKind,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("open {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("compile the {runtime} seccomp policy")]
    Seccomp {
        runtime: RuntimeKind,
        #[source]
        source: seccomp::SeccompError,
    },
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error("invalid instance name {instance:?}: use letters, digits, '-' and '_'")]
    InstanceName { instance: String },
    #[error("prepare descriptors for sandbox {id}")]
    Descriptors {
        id: u64,
        #[source]
        source: io::Error,
    },
    #[error("clone sandbox {id} (hint: user namespaces must be enabled: sysctl user.max_user_namespaces > 0, and the daemon must not run in a chroot)")]
    Clone {
        id: u64,
        #[source]
        source: io::Error,
    },
    #[error("write {file} of sandbox {id} (pid {pid})")]
    IdMap {
        id: u64,
        pid: i32,
        file: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("write oom_score_adj of sandbox {id} (pid {pid})")]
    OomScoreAdj {
        id: u64,
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("send the configuration to sandbox {id}")]
    SendConfig {
        id: u64,
        #[source]
        source: io::Error,
    },
    #[error("send the assignment to sandbox {id}")]
    Assign {
        id: u64,
        #[source]
        source: crate::ring::AssignmentError,
    },
    #[error("reap sandbox {id} (pid {pid})")]
    Reap {
        id: u64,
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("{what} {}", path.display())]
    PackageMounts {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sandbox {id}: {what}")]
    PackageMount {
        id: u64,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("open the code directory {} as a detached read-only mount", path.display())]
    CodeMount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_kind_round_trips() {
        for kind in RuntimeKind::all() {
            assert_eq!(kind.to_string().parse::<RuntimeKind>().unwrap(), kind);
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
            assert_eq!(serde_json::from_str::<RuntimeKind>(&json).unwrap(), kind);
        }
        assert!("ruby".parse::<RuntimeKind>().is_err());
    }

    #[test]
    fn lambda_runtime_names_parse() {
        let host = Some("python3.11");
        let parse = |name| RuntimeKind::parse_name(name, host);
        assert_eq!(parse("python3.11"), Ok(RuntimeKind::Python));
        for name in ["provided", "provided.al2", "provided.al2023"] {
            assert_eq!(parse(name), Ok(RuntimeKind::Provided));
        }
        let other = parse("python3.12").unwrap_err();
        assert!(other.contains("the host's python is python3.11"), "{other}");
        let unknown = RuntimeKind::parse_name("python3.12", None).unwrap_err();
        assert!(unknown.contains("version is unknown"), "{unknown}");
        let node = parse("nodejs20.x").unwrap_err();
        assert!(node.contains("not supported yet"), "{node}");
        let ruby = parse("ruby3.2").unwrap_err();
        assert!(
            ruby.contains("native, python, python3.11, provided, provided.al2, provided.al2023"),
            "{ruby}"
        );
        assert!(parse("provided.al3").is_err());
    }

    #[test]
    fn limits_scale_cpu_with_memory() {
        let small = Limits::for_memory_mb(128);
        assert_eq!(small.memory_bytes, 128 << 20);
        assert_eq!(small.cpu_shares, 128);
        let big = Limits::for_memory_mb(2048);
        assert_eq!(big.cpu_shares, 2048);
        assert_eq!(big.pids_max, 256);
    }

    #[test]
    fn cpu_quota_is_proportional_to_memory_with_a_floor() {
        assert_eq!(Limits::for_memory_mb(128).cpu_millis, MIN_CPU_MILLIS);
        assert_eq!(Limits::for_memory_mb(884).cpu_millis, MIN_CPU_MILLIS);
        assert_eq!(Limits::for_memory_mb(1769).cpu_millis, 1000);
        assert_eq!(Limits::for_memory_mb(3538).cpu_millis, 2000);
        assert_eq!(Limits::for_memory_mb(10240).cpu_millis, 5788);
    }
}
