//! File-level cgroup operations shared by v1 and v2: directories, limit
//! files, `cgroup.procs`, killing and draining, `rmdir` with retry.

#![deny(unsafe_code)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{CgroupError, CgroupVersion, CONTROLLERS};

/// How long `rmdir` is retried while tasks exit.
const REMOVE_RETRY: Duration = Duration::from_secs(2);
/// How long a kill waits for a cgroup to become empty.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(5);

pub(super) fn check_name(name: &str) -> Result<(), CgroupError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') || name.contains('\0') {
        return Err(CgroupError::InvalidName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

pub(super) fn mkdir(
    path: &Path,
    exist_ok: bool,
    version: CgroupVersion,
) -> Result<(), CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if exist_ok && e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => {
            let hint = match (source.kind(), version) {
                (io::ErrorKind::AlreadyExists, _) => {
                    " (hint: a leftover of an earlier run; cleanup_instance removes it)"
                }
                (io::ErrorKind::NotFound, CgroupVersion::V1) => {
                    " (hint: is the controller mounted? cgroup v1 needs /sys/fs/cgroup/{memory,cpu,pids})"
                }
                (io::ErrorKind::PermissionDenied, _) => {
                    " (hint: the daemon needs root or a delegated cgroup subtree)"
                }
                _ => "",
            };
            Err(CgroupError::Create {
                path: path.to_path_buf(),
                hint,
                source,
            })
        }
    }
}

/// Makes `dir`'s children get the memory, cpu and pids controllers (v2).
pub(super) fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&file).unwrap_or_default();
    for controller in CONTROLLERS {
        if enabled.split_whitespace().any(|c| c == controller) {
            continue;
        }
        fs::write(&file, format!("+{controller}")).map_err(|source| {
            CgroupError::EnableControllers {
                file: file.clone(),
                source,
            }
        })?;
    }
    Ok(())
}

pub(super) fn write_limit(file: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(file, value).map_err(|source| CgroupError::SetLimit {
        file: file.to_path_buf(),
        value: value.to_owned(),
        source,
    })
}

/// Writes a limit file that some kernels lack (swap accounting off).
pub(super) fn write_optional(file: &Path, value: &str) -> Result<(), CgroupError> {
    if file.exists() {
        write_limit(file, value)
    } else {
        tracing::debug!(file = %file.display(), "limit file absent, skipped");
        Ok(())
    }
}

pub(super) fn read_u64(file: &Path) -> Option<u64> {
    fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Reads `key N` from a flat-keyed file (`memory.events`, `memory.oom_control`).
pub(super) fn read_keyed(file: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

pub(super) fn read_procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CgroupError::List { path, source }),
    };
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

pub(super) fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::List {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::List {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

/// Depth-first: kill, drain and remove `dir` and everything below it.
pub(super) fn remove_tree(dir: &Path, version: CgroupVersion) -> Result<(), CgroupError> {
    for child in subdirs(dir)? {
        remove_tree(&child, version)?;
    }
    kill_and_drain(dir, version)?;
    rmdir_retry(dir)
}

/// SIGKILLs every process in `dir` until it is empty or [`DRAIN_TIMEOUT`]
/// passes. v2 with `cgroup.kill` (5.14+) kills atomically, forks included;
/// otherwise the loop re-reads `cgroup.procs` to catch processes forked
/// while it was killing.
pub(super) fn kill_and_drain(dir: &Path, version: CgroupVersion) -> Result<(), CgroupError> {
    let kill_file = dir.join("cgroup.kill");
    let use_kill_file = version == CgroupVersion::V2 && kill_file.exists();
    let start = Instant::now();
    let mut killed_once = false;
    loop {
        let pids = read_procs(dir)?;
        if pids.is_empty() {
            return Ok(());
        }
        if start.elapsed() > DRAIN_TIMEOUT {
            return Err(CgroupError::Drain {
                path: dir.to_path_buf(),
                pids,
                timeout: DRAIN_TIMEOUT,
            });
        }
        if use_kill_file {
            if !killed_once {
                fs::write(&kill_file, "1").map_err(|source| CgroupError::Kill {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
        } else {
            for pid in &pids {
                match kill(Pid::from_raw(*pid), Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(errno) => {
                        return Err(CgroupError::Kill {
                            path: dir.to_path_buf(),
                            source: errno.into(),
                        })
                    }
                }
            }
        }
        if !killed_once {
            tracing::debug!(cgroup = %dir.display(), ?pids, "killing cgroup processes");
        }
        killed_once = true;
        thread::sleep(POLL);
    }
}

pub(super) fn rmdir_retry(dir: &Path) -> Result<(), CgroupError> {
    let start = Instant::now();
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(Errno::EBUSY as i32)
                    && start.elapsed() < REMOVE_RETRY =>
            {
                thread::sleep(POLL)
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}
