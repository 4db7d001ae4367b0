//! Per-sandbox cgroups: memory, cpu and pids limits on cgroup v1 and v2.
//!
//! Layout: `<controller root>/<instance>/<sandbox>`. On v1 that directory
//! exists once per controller (memory, cpu, pids); on v2 it is one directory
//! whose parents delegate the three controllers through
//! `cgroup.subtree_control`. The instance level keeps the cgroups of several
//! daemons on one host apart: [`CgroupRoot::cleanup_instance`] removes what
//! an earlier run of one instance left, never another instance's cgroups.
//!
//! Detection and mount discovery go through cgroups-rs; the limit, report
//! and kill files are written directly, because cgroups-rs hard-codes
//! `/sys/fs/cgroup` (tests point [`CgroupRoot::with_root`] at a temp dir) and
//! does not expose `memory.peak`, the `oom_kill` counters or `cgroup.kill`.

#![deny(unsafe_code)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cgroups_rs::fs::hierarchies;
use cgroups_rs::fs::Controllers;

#[path = "cgroup_fs.rs"]
mod cgroup_fs;
#[path = "cgroup_moves.rs"]
mod cgroup_moves;
use cgroup_fs::{
    check_name, enable_controllers, kill_and_drain, mkdir, read_keyed, read_procs, read_u64,
    remove_tree, rmdir_retry, subdirs, write_limit, write_optional,
};
pub use cgroup_moves::{favor_dynamic_moves, Favor, FavorError};

/// The controllers every sandbox cgroup gets.
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
/// CFS period used for the one-CPU quota (v1 `cpu.cfs_period_us`, v2 `cpu.max`).
const CPU_PERIOD_US: u64 = 100_000;

/// Which cgroup hierarchy the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// One hierarchy per controller (`/sys/fs/cgroup/memory`, ...).
    V1,
    /// The unified hierarchy (`/sys/fs/cgroup/cgroup.controllers` exists).
    V2,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup v1 controller {controller} is not mounted (hint: is the {controller} controller mounted? cgroup v1 needs /sys/fs/cgroup/{controller})")]
    Detect { controller: &'static str },
    #[error(
        "invalid cgroup name {name:?}: must be non-empty, without '/', and not start with '.'"
    )]
    InvalidName { name: String },
    #[error("create cgroup {}{hint}", path.display())]
    Create {
        path: PathBuf,
        hint: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("enable controllers in {} (hint: the parent must list memory, cpu and pids in cgroup.controllers and hold no processes itself)", file.display())]
    EnableControllers {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("set cgroup limit {} to {value:?}", file.display())]
    SetLimit {
        file: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("add pid {pid} to cgroup {}", path.display())]
    AddTask {
        pid: i32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("kill processes of cgroup {}", path.display())]
    Kill {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {} still holds pids {pids:?} after {timeout:?}", path.display())]
    Drain {
        path: PathBuf,
        pids: Vec<i32>,
        timeout: Duration,
    },
    #[error("list cgroup {}", path.display())]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("remove cgroup {}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Limits of one sandbox cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Hard memory limit; memory plus swap is limited to the same value.
    pub memory_bytes: u64,
    /// Maximum number of tasks (processes and threads).
    pub pids_max: u64,
    /// Relative CPU weight in v1 shares (1024 = default); converted for v2.
    pub cpu_shares: u64,
    /// CPU bandwidth in thousandths of a CPU: the CFS quota per period.
    pub cpu_millis: u64,
}

impl CgroupLimits {
    /// The CFS quota per [`CPU_PERIOD_US`], at least 1 ms (the kernel's
    /// minimum).
    pub fn cpu_quota_us(&self) -> u64 {
        (self.cpu_millis * CPU_PERIOD_US / 1000).max(1000)
    }
}

/// What the memory controller recorded for one sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryReport {
    /// Processes the kernel OOM-killed inside this cgroup.
    pub oom_kills: u64,
    /// Highest memory usage seen (0 when the kernel does not report it).
    pub peak_bytes: u64,
}

/// Where this daemon creates cgroups, detected once per daemon.
#[derive(Debug, Clone)]
pub struct CgroupRoot {
    version: CgroupVersion,
    /// v1: one directory per entry of [`CONTROLLERS`], in that order;
    /// v2: the single unified directory.
    roots: Vec<PathBuf>,
}

impl CgroupRoot {
    /// Detects the host's hierarchy: v2 when `/sys/fs/cgroup` is a cgroup2
    /// mount, otherwise v1 with the memory, cpu and pids mounts.
    pub fn detect() -> Result<CgroupRoot, CgroupError> {
        if hierarchies::is_cgroup2_unified_mode() {
            let root = CgroupRoot {
                version: CgroupVersion::V2,
                roots: vec![PathBuf::from(hierarchies::UNIFIED_MOUNTPOINT)],
            };
            tracing::info!(version = "v2", root = %hierarchies::UNIFIED_MOUNTPOINT, "cgroups detected");
            return Ok(root);
        }
        let v1 = hierarchies::V1::new();
        let mut roots = Vec::with_capacity(CONTROLLERS.len());
        for (controller, which) in
            CONTROLLERS
                .iter()
                .zip([Controllers::Mem, Controllers::Cpu, Controllers::Pids])
        {
            let (mount, _) = v1
                .get_mount_point(which)
                .ok_or(CgroupError::Detect { controller })?;
            roots.push(mount);
        }
        tracing::info!(version = "v1", roots = ?roots, "cgroups detected");
        Ok(CgroupRoot {
            version: CgroupVersion::V1,
            roots,
        })
    }

    /// A root at `path`: for v2 the directory under which instances are
    /// created (a delegated subtree, or a temp dir in tests); for v1 a
    /// directory holding `memory/`, `cpu/` and `pids/`.
    pub fn with_root(path: &Path, version: CgroupVersion) -> CgroupRoot {
        let roots = match version {
            CgroupVersion::V1 => CONTROLLERS.iter().map(|c| path.join(c)).collect(),
            CgroupVersion::V2 => vec![path.to_path_buf()],
        };
        CgroupRoot { version, roots }
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// Creates `<instance>/<sandbox>` with `limits`. A sandbox cgroup that
    /// already exists is an error (a leftover: run [`Self::cleanup_instance`]
    /// at start-up). On failure nothing of the sandbox level is left behind.
    pub fn create(
        &self,
        instance: &str,
        sandbox: &str,
        limits: &CgroupLimits,
    ) -> Result<SandboxCgroup, CgroupError> {
        check_name(instance)?;
        check_name(sandbox)?;
        if self.version == CgroupVersion::V2 {
            enable_controllers(&self.roots[0])?;
        }
        let mut cgroup = SandboxCgroup {
            version: self.version,
            dirs: Vec::with_capacity(self.roots.len()),
        };
        for root in &self.roots {
            let parent = root.join(instance);
            mkdir(&parent, true, self.version)?;
            if self.version == CgroupVersion::V2 {
                enable_controllers(&parent)?;
            }
            let dir = parent.join(sandbox);
            if let Err(err) = mkdir(&dir, false, self.version) {
                let _ = cgroup.remove_dirs();
                return Err(err);
            }
            cgroup.dirs.push(dir);
        }
        if let Err(err) = cgroup.set_limits(limits) {
            let _ = cgroup.remove_dirs();
            return Err(err);
        }
        tracing::debug!(instance, sandbox, ?limits, "cgroup created");
        Ok(cgroup)
    }

    /// Removes what an earlier run of `instance` left: kills every process
    /// of every sandbox cgroup under it, waits (bounded) until they are
    /// gone, removes the sandbox directories and then the instance
    /// directory. Returns how many sandbox cgroups were removed. Other
    /// instances' directories are never looked at.
    pub fn cleanup_instance(&self, instance: &str) -> Result<usize, CgroupError> {
        check_name(instance)?;
        let mut removed = std::collections::BTreeSet::new();
        for root in &self.roots {
            let parent = root.join(instance);
            for dir in subdirs(&parent)? {
                remove_tree(&dir, self.version)?;
                if let Some(name) = dir.file_name() {
                    removed.insert(name.to_owned());
                }
            }
            kill_and_drain(&parent, self.version)?;
            rmdir_retry(&parent)?;
        }
        if !removed.is_empty() {
            tracing::warn!(
                instance,
                removed = removed.len(),
                "removed leftover sandbox cgroups"
            );
        }
        Ok(removed.len())
    }
}

/// The cgroup of one sandbox.
#[derive(Debug)]
pub struct SandboxCgroup {
    version: CgroupVersion,
    /// v1: memory, cpu, pids directories in that order; v2: one directory.
    dirs: Vec<PathBuf>,
}

impl SandboxCgroup {
    /// Moves process `pid` (all its threads) into this cgroup.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            let file = dir.join("cgroup.procs");
            fs::write(&file, pid.to_string()).map_err(|source| CgroupError::AddTask {
                pid,
                path: dir.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// OOM kills and peak usage; fields the kernel does not report are 0.
    pub fn memory_report(&self) -> MemoryReport {
        let dir = self.memory_dir();
        let (events, peak) = match self.version {
            CgroupVersion::V1 => ("memory.oom_control", "memory.max_usage_in_bytes"),
            CgroupVersion::V2 => ("memory.events", "memory.peak"),
        };
        MemoryReport {
            oom_kills: read_keyed(&dir.join(events), "oom_kill").unwrap_or(0),
            peak_bytes: read_u64(&dir.join(peak)).unwrap_or(0),
        }
    }

    /// Pids of the processes in this cgroup (any controller), sorted.
    pub fn procs(&self) -> Vec<i32> {
        let mut all: Vec<i32> = self
            .dirs
            .iter()
            .flat_map(|dir| read_procs(dir).unwrap_or_default())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// SIGKILLs every process in the cgroup (v2: `cgroup.kill`) and waits,
    /// bounded, until it is empty.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        kill_and_drain(self.memory_dir(), self.version)
    }

    /// Removes the cgroup directories, retrying briefly on `EBUSY` while
    /// tasks are still exiting. The processes must be gone (see
    /// [`Self::kill_all`]).
    pub fn remove(self) -> Result<(), CgroupError> {
        self.remove_dirs()?;
        tracing::debug!(dirs = ?self.dirs, "cgroup removed");
        Ok(())
    }

    /// The directories of this cgroup (one per v1 controller, one on v2).
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.clone()
    }

    fn memory_dir(&self) -> &Path {
        &self.dirs[0]
    }

    fn remove_dirs(&self) -> Result<(), CgroupError> {
        self.dirs.iter().try_for_each(|dir| rmdir_retry(dir))
    }

    fn set_limits(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        let mem = limits.memory_bytes.to_string();
        let period = CPU_PERIOD_US.to_string();
        let quota = limits.cpu_quota_us().to_string();
        match self.version {
            CgroupVersion::V1 => {
                let (memory, cpu, pids) = (&self.dirs[0], &self.dirs[1], &self.dirs[2]);
                // The memory limit first: memsw must never be below it.
                write_limit(&memory.join("memory.limit_in_bytes"), &mem)?;
                write_optional(&memory.join("memory.memsw.limit_in_bytes"), &mem)?;
                write_limit(&memory.join("memory.oom_control"), "0")?;
                write_limit(&cpu.join("cpu.shares"), &limits.cpu_shares.to_string())?;
                write_limit(&cpu.join("cpu.cfs_period_us"), &period)?;
                write_limit(&cpu.join("cpu.cfs_quota_us"), &quota)?;
                write_limit(&pids.join("pids.max"), &limits.pids_max.to_string())?;
            }
            CgroupVersion::V2 => {
                let dir = &self.dirs[0];
                write_limit(&dir.join("memory.max"), &mem)?;
                // memory.swap.max is absent without swap accounting.
                write_optional(&dir.join("memory.swap.max"), "0")?;
                let weight = shares_to_weight(limits.cpu_shares).to_string();
                write_limit(&dir.join("cpu.weight"), &weight)?;
                write_limit(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
                write_limit(&dir.join("pids.max"), &limits.pids_max.to_string())?;
            }
        }
        Ok(())
    }
}

/// v1 `cpu.shares` to v2 `cpu.weight`, the conversion runc and crun use.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command};

    const MIB: u64 = 1024 * 1024;
    const LIMITS: CgroupLimits = CgroupLimits {
        memory_bytes: 64 * MIB,
        pids_max: 32,
        cpu_shares: 512,
        cpu_millis: 1500,
    };

    fn instance(tag: &str) -> String {
        format!("sprout-test-{}-{tag}", std::process::id())
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    fn spawn(program: &str, args: &[&str]) -> Child {
        Command::new(program).args(args).spawn().expect("spawn")
    }

    fn pid(child: &Child) -> i32 {
        i32::try_from(child.id()).expect("pid fits i32")
    }

    #[test]
    fn shares_convert_to_weight_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1, "clamped to the v1 minimum");
    }

    #[test]
    fn names_with_slashes_or_dots_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let root = CgroupRoot::with_root(dir.path(), CgroupVersion::V2);
        for bad in ["", "a/b", "..", ".hidden"] {
            let err = root.create(bad, "sb", &LIMITS).unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidName { .. }),
                "{bad:?}: {err}"
            );
            let err = root.create("inst", bad, &LIMITS).unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidName { .. }),
                "{bad:?}: {err}"
            );
        }
        assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    /// The v2 code path against a plain directory, so a v1 host checks it too.
    #[test]
    fn v2_layout_and_limit_files_in_a_temp_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = CgroupRoot::with_root(dir.path(), CgroupVersion::V2);
        assert_eq!(root.version(), CgroupVersion::V2);
        let cg = root.create("inst", "sb1", &LIMITS).unwrap();
        let sb = dir.path().join("inst/sb1");
        assert_eq!(cg.paths(), vec![sb.clone()]);
        assert_eq!(read(&sb.join("memory.max")), (64 * MIB).to_string());
        assert_eq!(
            read(&sb.join("cpu.weight")),
            shares_to_weight(512).to_string()
        );
        assert_eq!(read(&sb.join("cpu.max")), "150000 100000");
        assert_eq!(read(&sb.join("pids.max")), "32");
        // Each controller is enabled with its own write; a plain file keeps the last.
        assert_eq!(
            read(&dir.path().join("inst/cgroup.subtree_control")),
            "+pids"
        );
        let err = root.create("inst", "sb1", &LIMITS).unwrap_err();
        assert!(err.to_string().contains("leftover"), "{err}");

        cg.add_pid(4242).unwrap();
        assert_eq!(cg.procs(), vec![4242]);
        fs::write(
            sb.join("memory.events"),
            "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n",
        )
        .unwrap();
        fs::write(sb.join("memory.peak"), "1234\n").unwrap();
        assert_eq!(
            cg.memory_report(),
            MemoryReport {
                oom_kills: 2,
                peak_bytes: 1234
            }
        );
    }

    #[test]
    fn create_sets_limits_readable_from_the_files() {
        if !crate::testing::require_root("cgroup::create_sets_limits_readable_from_the_files") {
            return;
        }
        let root = CgroupRoot::detect().unwrap();
        let inst = instance("limits");
        let cg = root.create(&inst, "sb", &LIMITS).unwrap();
        let paths = cg.paths();
        match root.version() {
            CgroupVersion::V1 => {
                assert_eq!(paths.len(), 3);
                let (mem, cpu, pids) = (&paths[0], &paths[1], &paths[2]);
                let limit = (64 * MIB).to_string();
                assert_eq!(read(&mem.join("memory.limit_in_bytes")), limit);
                if mem.join("memory.memsw.limit_in_bytes").exists() {
                    assert_eq!(read(&mem.join("memory.memsw.limit_in_bytes")), limit);
                }
                assert!(read(&mem.join("memory.oom_control")).contains("oom_kill_disable 0"));
                assert_eq!(read(&cpu.join("cpu.shares")), "512");
                assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
                assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "150000");
                assert_eq!(read(&pids.join("pids.max")), "32");
            }
            CgroupVersion::V2 => {
                let dir = &paths[0];
                assert_eq!(read(&dir.join("memory.max")), (64 * MIB).to_string());
                assert_eq!(
                    read(&dir.join("cpu.weight")),
                    shares_to_weight(512).to_string()
                );
                assert_eq!(read(&dir.join("cpu.max")), "150000 100000");
                assert_eq!(read(&dir.join("pids.max")), "32");
            }
        }
        cg.remove().unwrap();
        assert!(paths.iter().all(|p| !p.exists()), "left behind: {paths:?}");
        assert_eq!(root.cleanup_instance(&inst).unwrap(), 0);
    }

    #[test]
    fn added_process_shows_in_procs_and_kill_all_empties_it() {
        if !crate::testing::require_root("cgroup::added_process_shows_in_procs") {
            return;
        }
        let root = CgroupRoot::detect().unwrap();
        let inst = instance("procs");
        let cg = root.create(&inst, "sb", &LIMITS).unwrap();
        let mut child = spawn("sleep", &["5"]);
        cg.add_pid(pid(&child)).unwrap();
        assert_eq!(cg.procs(), vec![pid(&child)]);
        for dir in cg.paths() {
            assert_eq!(read(&dir.join("cgroup.procs")), pid(&child).to_string());
        }
        cg.kill_all().unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(Signal::SIGKILL as i32));
        assert!(cg.procs().is_empty());
        let paths = cg.paths();
        cg.remove().unwrap();
        assert!(paths.iter().all(|p| !p.exists()), "left behind: {paths:?}");
        assert_eq!(root.cleanup_instance(&inst).unwrap(), 0);
    }

    #[test]
    fn memory_hog_is_oom_killed_and_reported() {
        if !crate::testing::require_root("cgroup::memory_hog_is_oom_killed_and_reported") {
            return;
        }
        let root = CgroupRoot::detect().unwrap();
        let inst = instance("oom");
        let cg = root.create(&inst, "sb", &LIMITS).unwrap();
        // The child waits on stdin until it is inside the cgroup.
        let mut child = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import sys; sys.stdin.read(1); b = bytearray(200*1024*1024)",
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        cg.add_pid(pid(&child)).unwrap();
        drop(child.stdin.take());
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status:?}");
        let report = cg.memory_report();
        assert!(report.oom_kills >= 1, "{report:?}");
        assert!(
            report.peak_bytes >= 48 * MIB && report.peak_bytes <= 66 * MIB,
            "peak should be near the 64 MiB limit: {report:?}"
        );
        cg.remove().unwrap();
        root.cleanup_instance(&inst).unwrap();
    }

    #[test]
    fn cleanup_instance_kills_leftovers_and_spares_other_instances() {
        if !crate::testing::require_root("cgroup::cleanup_instance_kills_leftovers") {
            return;
        }
        let root = CgroupRoot::detect().unwrap();
        let (old, other) = (instance("old"), instance("other"));
        // An "earlier run" left two sandbox cgroups, one with a live process.
        let left = root.create(&old, "sb-a", &LIMITS).unwrap();
        let empty = root.create(&old, "sb-b", &LIMITS).unwrap();
        let mut leftover = spawn("sleep", &["30"]);
        left.add_pid(pid(&leftover)).unwrap();
        let mut paths = left.paths();
        paths.extend(empty.paths());
        drop((left, empty));
        let live = root.create(&other, "sb", &LIMITS).unwrap();
        let mut bystander = spawn("sleep", &["30"]);
        live.add_pid(pid(&bystander)).unwrap();

        assert_eq!(root.cleanup_instance(&old).unwrap(), 2);
        assert_eq!(
            leftover.wait().unwrap().signal(),
            Some(Signal::SIGKILL as i32)
        );
        assert!(paths.iter().all(|p| !p.exists()), "left behind: {paths:?}");
        assert!(paths.iter().all(|p| !p.parent().unwrap().exists()));
        assert_eq!(
            live.procs(),
            vec![pid(&bystander)],
            "other instance untouched"
        );
        assert!(bystander.try_wait().unwrap().is_none());

        live.kill_all().unwrap();
        bystander.wait().unwrap();
        live.remove().unwrap();
        assert_eq!(root.cleanup_instance(&other).unwrap(), 0);
    }
}
