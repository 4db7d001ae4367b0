//! The peers: what a user would pick instead of sprout to run the same
//! function per request. Each starts the same no-op native executable, or
//! the same python handler through `run_once.py`, for every request:
//!
//! - fork+exec: a plain child process, no isolation;
//! - bwrap: bubblewrap with `--unshare-all` and the host root read-only;
//! - runc / crun: `run` of an OCI bundle whose root is the host's /usr,
//!   /lib*, /bin, /sbin and /etc bound read-only (the same host root sprout's
//!   sandboxes are built from), with runc's default namespaces.
//!
//! A peer that cannot run here keeps its place in the report with the
//! reason.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::functions::{Functions, Runtime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerKind {
    ForkExec,
    Bwrap,
    Runc,
    Crun,
}

impl PeerKind {
    pub const ALL: [PeerKind; 4] = [
        PeerKind::ForkExec,
        PeerKind::Bwrap,
        PeerKind::Runc,
        PeerKind::Crun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::ForkExec => "fork+exec",
            PeerKind::Bwrap => "bwrap",
            PeerKind::Runc => "runc",
            PeerKind::Crun => "crun",
        }
    }

    fn tool(self) -> Option<&'static str> {
        match self {
            PeerKind::ForkExec => None,
            PeerKind::Bwrap => Some("bwrap"),
            PeerKind::Runc => Some("runc"),
            PeerKind::Crun => Some("crun"),
        }
    }
}

/// A peer ready to start requests, or why it cannot.
pub struct Peer {
    pub kind: PeerKind,
    pub version: Option<String>,
    pub unavailable: Option<String>,
    tool: Option<PathBuf>,
    bundles: Option<PathBuf>,
}

static CONTAINER_SEQ: AtomicU64 = AtomicU64::new(0);

impl Peer {
    /// Find the peer's tool, build its bundles, and probe one request of
    /// each runtime; a failure makes it unavailable with the reason.
    pub fn prepare(kind: PeerKind, work: &Path, functions: &Functions) -> Peer {
        let mut peer = Peer {
            kind,
            version: None,
            unavailable: None,
            tool: None,
            bundles: None,
        };
        if let Some(tool) = kind.tool() {
            match which(tool) {
                Some(path) => {
                    peer.version = version(&path);
                    peer.tool = Some(path);
                }
                None => {
                    peer.unavailable = Some(format!(
                        "{tool} is not installed (benches/setup.sh installs it)"
                    ));
                    return peer;
                }
            }
        }
        if matches!(kind, PeerKind::Runc | PeerKind::Crun) {
            let dir = work.join(format!("oci-{}", kind.as_str()));
            match build_bundles(peer.tool.as_deref().expect("found"), &dir, functions) {
                Ok(()) => peer.bundles = Some(dir),
                Err(reason) => {
                    peer.unavailable = Some(reason);
                    return peer;
                }
            }
        }
        for runtime in Runtime::ALL {
            if let Err(reason) = peer.request(runtime, functions, b"\"probe\"") {
                peer.unavailable = Some(reason);
                break;
            }
        }
        peer
    }

    fn command(&self, runtime: Runtime, functions: &Functions) -> Command {
        // What runs inside, with the code dir at `code`.
        let inner = |code: &str| -> Vec<String> {
            match runtime {
                Runtime::Native => vec![format!("{code}/bootstrap"), "--stdio".into()],
                Runtime::Python => vec![
                    "/usr/bin/python3".into(),
                    "-I".into(),
                    format!("{code}/run_once.py"),
                    code.into(),
                    "app.handler".into(),
                ],
            }
        };
        let host_code = functions.code_dir(runtime).to_str().expect("utf-8");
        match self.kind {
            PeerKind::ForkExec => {
                let argv = inner(host_code);
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..]);
                cmd
            }
            PeerKind::Bwrap => {
                let mut cmd = Command::new(self.tool.as_ref().expect("found"));
                cmd.args(["--unshare-all", "--die-with-parent", "--new-session"])
                    .args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"])
                    // The code dir at its own path (under the fresh /tmp).
                    .args(["--tmpfs", "/tmp", "--ro-bind", host_code, host_code])
                    .arg("--")
                    .args(inner(host_code));
                cmd
            }
            PeerKind::Runc | PeerKind::Crun => {
                let bundle = self
                    .bundles
                    .as_ref()
                    .expect("bundles built")
                    .join(runtime.as_str());
                let id = format!(
                    "sprout-bench-{}-{}",
                    std::process::id(),
                    CONTAINER_SEQ.fetch_add(1, Ordering::Relaxed)
                );
                let mut cmd = Command::new(self.tool.as_ref().expect("found"));
                cmd.arg("run").arg("--bundle").arg(bundle).arg(id);
                cmd
            }
        }
    }

    /// Start one request with `payload` on stdin; the time until its result
    /// was read and the process was reaped.
    pub fn request(
        &self,
        runtime: Runtime,
        functions: &Functions,
        payload: &[u8],
    ) -> Result<Duration, String> {
        let mut cmd = self.command(runtime, functions);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(payload)
            .map_err(|e| format!("write the payload: {e}"))?;
        drop(stdin);
        let mut out = Vec::new();
        child
            .stdout
            .take()
            .expect("piped")
            .read_to_end(&mut out)
            .map_err(|e| format!("read the result: {e}"))?;
        let mut err = String::new();
        let _ = child.stderr.take().expect("piped").read_to_string(&mut err);
        let status = child.wait().map_err(|e| format!("wait: {e}"))?;
        let elapsed = start.elapsed();
        if !status.success() || out != payload {
            let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
            return Err(format!(
                "{} {} request failed ({status}): {last}",
                self.kind.as_str(),
                runtime.as_str()
            ));
        }
        Ok(elapsed)
    }

    pub fn describe(&self) -> Value {
        json!({
            "peer": self.kind.as_str(),
            "version": self.version,
            "available": self.unavailable.is_none(),
            "unavailable_reason": self.unavailable,
        })
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.is_file())
}

fn version(tool: &Path) -> Option<String> {
    let out = Command::new(tool).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(str::to_owned)
}

/// One OCI bundle per runtime under `dir`: the tool's default spec with the
/// process, a read-only root of empty mount points, and read-only binds of
/// the host's /usr, /lib*, /bin, /sbin, /etc and the function's code.
fn build_bundles(tool: &Path, dir: &Path, functions: &Functions) -> Result<(), String> {
    for runtime in Runtime::ALL {
        let bundle = dir.join(runtime.as_str());
        let _ = std::fs::remove_dir_all(&bundle);
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(|e| format!("create {rootfs:?}: {e}"))?;
        let spec = Command::new(tool)
            .arg("spec")
            .current_dir(&bundle)
            .output()
            .map_err(|e| format!("{tool:?} spec: {e}"))?;
        if !spec.status.success() {
            return Err(format!(
                "{tool:?} spec failed: {}",
                String::from_utf8_lossy(&spec.stderr).trim()
            ));
        }
        let path = bundle.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("read {path:?}: {e}"))?;
        let mut config: Value =
            serde_json::from_str(&text).map_err(|e| format!("parse {path:?}: {e}"))?;
        let args: Vec<&str> = match runtime {
            Runtime::Native => vec!["/code/bootstrap", "--stdio"],
            Runtime::Python => vec![
                "/usr/bin/python3",
                "-I",
                "/code/run_once.py",
                "/code",
                "app.handler",
            ],
        };
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        config["process"]["cwd"] = json!("/");
        config["root"] = json!({ "path": "rootfs", "readonly": true });
        let mut binds: Vec<(PathBuf, String)> = Vec::new();
        for host in [
            "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc",
        ] {
            if Path::new(host).exists() {
                binds.push((PathBuf::from(host), host.to_string()));
            }
        }
        binds.push((functions.code_dir(runtime).to_path_buf(), "/code".into()));
        let mounts = config["mounts"]
            .as_array_mut()
            .ok_or("spec has no mounts")?;
        mounts.retain(|m| m["destination"] != "/tmp");
        mounts.push(json!({
            "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "size=65536k"],
        }));
        for (source, destination) in binds {
            let point = rootfs.join(destination.trim_start_matches('/'));
            if source.is_dir() {
                std::fs::create_dir_all(&point)
            } else {
                std::fs::write(&point, b"")
            }
            .map_err(|e| format!("create mount point {point:?}: {e}"))?;
            mounts.push(json!({
                "destination": destination, "type": "bind",
                "source": source, "options": ["rbind", "ro"],
            }));
        }
        for point in ["proc", "dev", "sys", "tmp"] {
            let _ = std::fs::create_dir_all(rootfs.join(point));
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("json"))
            .map_err(|e| format!("write {path:?}: {e}"))?;
    }
    Ok(())
}
