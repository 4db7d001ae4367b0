//! Cheap moves into cgroups: the cgroup2 root flag `favordynmods`.
//!
//! Every new sandbox is moved into its own cgroups right after clone (its
//! pid written to `cgroup.procs`). By default the kernel guards such moves
//! with one global per-CPU rwsem whose writer waits for an RCU grace
//! period: 1 to 20 ms per sandbox on the 2-core machine of the benchmarks,
//! spent on the daemon's event loop and on the critical path of every
//! empty-pool cold start. With `favordynmods` (Linux 6.0+; from 6.18 it
//! also makes that lock per process) a move takes about 0.1 ms, at a small
//! cost on every fork and exit. The flag belongs to the cgroup2 root but
//! guards the moves of v1 hierarchies too (the rwsem is shared), so it is
//! set the same way on v1, hybrid and v2 hosts.
//!
//! A mount of cgroup2 sets *all* of its root's flags from its options, so
//! the options of the host's cgroup2 mount (e.g. systemd's
//! `nsdelegate,memory_recursiveprot`) are read from mountinfo and passed
//! along; the mount is made on a scratch directory and detached at once,
//! leaving the host's mounts as they were. A v2-only alternative is
//! `clone3(CLONE_INTO_CGROUP)`, which never moves a process at all.

#![deny(unsafe_code)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

const FLAG: &str = "favordynmods";

#[derive(Debug, thiserror::Error)]
pub enum FavorError {
    #[error("read /proc/self/mountinfo")]
    MountInfo(#[source] io::Error),
    #[error("create scratch directory {}", path.display())]
    Scratch {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the kernel left the cgroup2 root's flags as they were (hint: only a daemon in the initial cgroup namespace can set favordynmods)")]
    Ignored,
    #[error("mount cgroup2 with options {options:?} (hint: favordynmods needs Linux 6.0 or later; without it each sandbox waits for an RCU grace period when moved into its cgroups)")]
    Mount {
        options: String,
        #[source]
        source: nix::Error,
    },
}

/// What [`favor_dynamic_moves`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Favor {
    /// The host's cgroup2 root had the flag already.
    AlreadySet,
    /// Set now, keeping the root's other `options`.
    Set { options: String },
}

/// Set `favordynmods` on the cgroup2 root, through a mount on `scratch`
/// (created if missing, removed after).
pub fn favor_dynamic_moves(scratch: &Path) -> Result<Favor, FavorError> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(FavorError::MountInfo)?;
    let current = cgroup2_options(&mountinfo).unwrap_or_default();
    if current.iter().any(|o| o == FLAG) {
        return Ok(Favor::AlreadySet);
    }
    let options = current
        .iter()
        .map(String::as_str)
        .filter(|o| !matches!(*o, "rw" | "ro"))
        .chain([FLAG])
        .collect::<Vec<_>>()
        .join(",");
    fs::create_dir_all(scratch).map_err(|source| FavorError::Scratch {
        path: scratch.to_path_buf(),
        source,
    })?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mounted = mount(
        Some("cgroup2"),
        scratch,
        Some("cgroup2"),
        flags,
        Some(options.as_str()),
    );
    if mounted.is_ok() {
        if let Err(err) = umount2(scratch, MntFlags::MNT_DETACH) {
            tracing::warn!(scratch = %scratch.display(), %err, "detach the scratch cgroup2 mount");
        }
    }
    let _ = fs::remove_dir(scratch);
    mounted.map_err(|source| FavorError::Mount {
        options: options.clone(),
        source,
    })?;
    // Outside the initial cgroup namespace the kernel takes the mount but
    // not its flags: read them back where a cgroup2 mount shows them.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(FavorError::MountInfo)?;
    if cgroup2_options(&mountinfo).is_some_and(|now| !now.iter().any(|o| o == FLAG)) {
        return Err(FavorError::Ignored);
    }
    Ok(Favor::Set { options })
}

/// The super options of the first cgroup2 mount in `mountinfo`, if any.
fn cgroup2_options(mountinfo: &str) -> Option<Vec<String>> {
    mountinfo.lines().find_map(|line| {
        // `... mount-point options optional-fields - fstype source super-options`
        let (_, after) = line.split_once(" - ")?;
        let mut fields = after.split_whitespace();
        if fields.next()? != "cgroup2" {
            return None;
        }
        let options = fields.nth(1).unwrap_or("");
        Some(options.split(',').map(str::to_owned).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
";

    #[test]
    fn finds_the_cgroup2_super_options() {
        assert_eq!(
            cgroup2_options(HYBRID),
            Some(vec!["rw".to_owned(), "nsdelegate".to_owned()])
        );
        let v1_only: String = HYBRID.lines().filter(|l| !l.contains("cgroup2")).collect();
        assert_eq!(cgroup2_options(&v1_only), None);
    }

    #[test]
    fn sets_the_flag_and_keeps_the_other_options() {
        if !crate::testing::require_root("favordynmods") {
            return;
        }
        let scratch = tempfile::tempdir().unwrap();
        let before = cgroup2_options(&fs::read_to_string("/proc/self/mountinfo").unwrap());
        let favor = favor_dynamic_moves(&scratch.path().join("cgroup2")).unwrap();
        let after = cgroup2_options(&fs::read_to_string("/proc/self/mountinfo").unwrap());
        match (before, favor) {
            (Some(before), Favor::Set { options }) => {
                let after = after
                    .as_ref()
                    .expect("the host's cgroup2 mount is still there");
                assert!(after.iter().any(|o| o == FLAG), "{after:?}");
                for option in before.iter().filter(|o| !matches!(o.as_str(), "rw" | "ro")) {
                    assert!(
                        options.split(',').any(|o| o == option),
                        "{options} lost {option}"
                    );
                    assert!(after.contains(option), "the host mount lost {option}");
                }
            }
            (Some(before), Favor::AlreadySet) => assert!(before.iter().any(|o| o == FLAG)),
            // A host without any cgroup2 mount: the flag was set on its
            // (unmounted) root, nothing to read back.
            (None, favor) => assert!(matches!(favor, Favor::Set { .. })),
        }
        assert!(!scratch.path().join("cgroup2").exists(), "scratch removed");
        if after.is_some() {
            assert_eq!(
                favor_dynamic_moves(&scratch.path().join("cgroup2")).unwrap(),
                Favor::AlreadySet,
                "a second call finds the flag set"
            );
        }
    }
}
