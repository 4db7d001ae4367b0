//! [`SandboxEnv`]: what every sandbox of one daemon shares, prepared once
//! per daemon start.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::cgroup::CgroupRoot;
use super::etc::{self, Layout};
use super::package::PackageMounts;
use super::{seccomp, RuntimeKind, SandboxError};

/// First host uid of the per-instance ranges.
const HOST_UID_BASE: u32 = 0x2000_0000;
/// Instances are spread over this many ranges of 65536 uids.
const HOST_UID_RANGES: u32 = 4096;

/// Built once per daemon: the shared root files, the compiled seccomp
/// filters, the cgroup hierarchy and the init program.
#[derive(Debug)]
pub struct SandboxEnv {
    pub(super) instance: String,
    pub(super) layout: Layout,
    pub(super) cgroups: CgroupRoot,
    /// Raw BPF per runtime (see [`super::config::InitConfig::seccomp`]).
    pub(super) seccomp: BTreeMap<RuntimeKind, Vec<u8>>,
    /// `O_PATH` descriptor of the program re-executed as the sandbox init.
    pub(super) init_exe: OwnedFd,
    pub(super) uid_base: u32,
    /// `SPROUT_SANDBOX_STDERR=inherit`: sandboxes keep the daemon's stderr.
    pub(super) keep_stderr: bool,
    /// STATE/logs/INSTANCE: one capped output log per live sandbox.
    pub(super) logs: PathBuf,
    /// STATE/rootfs/mounts: where the daemon mounts each sandbox's package.
    pub(super) package_mounts: PackageMounts,
    /// The AWS region sandboxes report (`serve --region`).
    pub(super) region: String,
}

impl SandboxEnv {
    /// Assemble STATE/rootfs (curated etc, runtime files), compile the
    /// seccomp filter of every runtime and detect the cgroup hierarchy.
    /// The calling thread (which must be the one that spawns sandboxes)
    /// moves into a mount namespace of its own (see `package.rs`).
    /// `instance` (e.g. `sprout-1a2b3c4d`) names this daemon's cgroups and
    /// picks its host uid range.
    pub fn prepare(state_dir: &Path, instance: &str) -> Result<SandboxEnv, SandboxError> {
        SandboxEnv::prepare_with(state_dir, instance, CgroupRoot::detect()?)
    }

    /// [`Self::prepare`] with an explicit cgroup root.
    pub fn prepare_with(
        state_dir: &Path,
        instance: &str,
        cgroups: CgroupRoot,
    ) -> Result<SandboxEnv, SandboxError> {
        check_instance(instance)?;
        std::fs::create_dir_all(state_dir).map_err(|source| SandboxError::StateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let layout = Layout::new(state_dir);
        etc::prepare(&layout, Path::new("/etc"))?;
        let package_mounts = PackageMounts::prepare(&layout.dir)?;
        let mut filters = BTreeMap::new();
        for runtime in RuntimeKind::all() {
            let program = seccomp::compile(runtime.as_str())
                .map_err(|source| SandboxError::Seccomp { runtime, source })?;
            filters.insert(runtime, program.to_bytes());
        }
        let logs = state_dir.join("logs").join(instance);
        prepare_logs(&logs)?;
        let init_exe = open_path(Path::new("/proc/self/exe"))?;
        let keep_stderr = std::env::var_os("SPROUT_SANDBOX_STDERR").is_some_and(|v| v == "inherit");
        let uid_base = uid_base(instance);
        tracing::info!(instance, rootfs = %layout.dir.display(), uid_base, "sandbox environment prepared");
        Ok(SandboxEnv {
            instance: instance.to_owned(),
            layout,
            cgroups,
            seccomp: filters,
            init_exe,
            uid_base,
            keep_stderr,
            logs,
            package_mounts,
            region: crate::lambda::env::DEFAULT_REGION.to_owned(),
        })
    }

    /// Re-execute `program` (a sprout binary) as the sandbox init instead of
    /// this process's own executable: for tests, whose executable is the
    /// test harness.
    pub fn set_init_program(&mut self, program: &Path) -> Result<(), SandboxError> {
        self.init_exe = open_path(program)?;
        Ok(())
    }

    /// The AWS region sandboxes report (default us-east-1).
    pub fn set_region(&mut self, region: &str) {
        region.clone_into(&mut self.region);
    }

    /// Kill and remove what an earlier run of this instance left (cgroups
    /// and their processes); never another instance's. Returns how many
    /// sandboxes were removed.
    pub fn cleanup_leftovers(&self) -> Result<usize, SandboxError> {
        Ok(self.cgroups.cleanup_instance(&self.instance)?)
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// STATE/rootfs: the shared files sandbox roots are built from.
    pub fn rootfs_dir(&self) -> &Path {
        &self.layout.dir
    }

    /// The host uid sandbox `id` runs as: never 0, unique per id modulo
    /// 65536 within this instance.
    pub fn host_uid(&self, id: u64) -> u32 {
        self.uid_base + (id % 65536) as u32
    }

    /// STATE/logs/INSTANCE/sandbox-ID.log: sandbox `id`'s output.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.logs.join(format!("sandbox-{id}.log"))
    }
}

/// A fresh, private log directory: logs an earlier run of this instance
/// left (it crashed) go.
fn prepare_logs(dir: &Path) -> Result<(), SandboxError> {
    use std::os::unix::fs::DirBuilderExt;
    let err = |source| SandboxError::StateDir {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)
}

/// The daemon leaves nothing behind: when its environment goes, so do the
/// instance's cgroups and any sandbox still in them.
impl Drop for SandboxEnv {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.logs) {
            tracing::warn!(instance = %self.instance, logs = %self.logs.display(), %err, "remove the sandbox logs");
        }
        match self.cgroups.cleanup_instance(&self.instance) {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(instance = %self.instance, sandboxes = n, "killed sandboxes at shutdown")
            }
            Err(err) => {
                tracing::warn!(instance = %self.instance, %err, "remove the instance's cgroups")
            }
        }
    }
}

fn open_path(path: &Path) -> Result<OwnedFd, SandboxError> {
    open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(|errno| {
        SandboxError::Open {
            path: path.to_path_buf(),
            source: errno.into(),
        }
    })
}

fn check_instance(instance: &str) -> Result<(), SandboxError> {
    let ok = !instance.is_empty()
        && instance.len() <= 64
        && instance
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SandboxError::InstanceName {
            instance: instance.to_owned(),
        })
    }
}

/// FNV-1a: stable across builds, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn uid_base(instance: &str) -> u32 {
    HOST_UID_BASE + (fnv1a(instance.as_bytes()) % u64::from(HOST_UID_RANGES)) as u32 * 65536
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_ranges_are_stable_nonzero_and_per_instance() {
        let a = uid_base("sprout-1a2b3c4d");
        assert_eq!(a, uid_base("sprout-1a2b3c4d"));
        assert!(a >= HOST_UID_BASE);
        assert_eq!(a % 65536, 0);
        assert!(a + 65535 < 0x3000_0000);
        assert_ne!(a, uid_base("sprout-1a2b3c4e"));
    }

    #[test]
    fn instance_names_are_checked() {
        assert!(check_instance("sprout-1a2b_3").is_ok());
        for bad in ["", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(check_instance(bad).is_err(), "{bad:?}");
        }
    }
}
