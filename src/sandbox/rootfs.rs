//! The sandbox's root filesystem, built inside its own mount namespace: a
//! tmpfs root holding read-only binds of the host's /usr and /lib*, the
//! curated /etc and the runtime's files (/var/runtime), the mount points
//! the daemon fills with the function's package later (/var/task, /opt,
//! /tmp: see `package.rs`), a minimal /dev and a fresh /proc; then
//! `pivot_root` into it and detach the host's tree.
//!
//! Paths are relative to the init's working directory, STATE/rootfs, which
//! the child entered before giving up its parent's credentials: the init's
//! unprivileged host uid never needs to traverse the state directory's
//! ancestors. See rootfs/README.md for what the root holds and why.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, DirBuilderExt};
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::config::InitConfig;
use super::confine::{ConfineError, Step};
use super::package::PACKAGE_DIRS;
use crate::sys::mount::{
    mount_setattr_at_cwd, AT_RECURSIVE, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
};

/// Host directories bound read-only at the same place (or recreated as the
/// same symlink, as /bin -> usr/bin on merged-/usr systems). Absent ones are
/// skipped.
pub const HOST_DIRS: &[&str] = &["usr", "lib", "lib64", "lib32", "libx32", "bin", "sbin"];

/// Device nodes bound from the host's /dev (a user namespace cannot mknod).
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

/// Where the runtime's files appear inside the sandbox (Lambda's
/// `LAMBDA_RUNTIME_DIR`), relative to the root.
pub const RUNTIME_MOUNT: &str = "var/runtime";

const OLD_ROOT: &str = ".oldroot";

pub fn build(config: &InitConfig) -> Result<(), ConfineError> {
    let root = Path::new(&config.newroot_dir);
    make_root_slave()?; // receive the daemon's package mounts, send nothing back
    mount_root_tmpfs(root)?;
    for dir in HOST_DIRS {
        bind_host_dir(root, dir)?;
    }
    bind_read_only(Path::new(&config.etc_dir), &root.join("etc"))?;
    bind_read_only(Path::new(&config.runtime_dir), &root.join(RUNTIME_MOUNT))?;
    bind_package_dirs(root, Path::new(&config.package_dir))?;
    mount_dev(root)?;
    mount_proc(root)?;
    pivot(root)?;
    remount_root_read_only()
}

/// Mounts copied from the daemon's namespace are slaves or private
/// already (a less privileged namespace never gets shared copies); rslave
/// makes sure none can propagate back. Every bind below but the package
/// directories is then made private, so the host's later mounts stay out.
fn make_root_slave() -> Result<(), ConfineError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| ConfineError::new(Step::RootSlave, "make / rslave", e.into()))
}

fn make_private(target: &Path) -> nix::Result<()> {
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
}

/// Bind the sandbox's package directories (STATE/rootfs/mounts/ID/...) on
/// /var/task and /opt: read-only, empty until the daemon attaches the
/// function's mounts under them, which then propagate here (these binds
/// stay slaves of the daemon's shared mount, unlike every other bind);
/// and on /tmp the tmpfs the daemon mounted there before the clone.
fn bind_package_dirs(root: &Path, dir: &Path) -> Result<(), ConfineError> {
    for (name, at) in PACKAGE_DIRS {
        let source = dir.join(name);
        let target = root.join(at);
        let what = || {
            format!(
                "bind {} on {} as a slave",
                source.display(),
                target.display()
            )
        };
        mkdir_all(&target).map_err(|e| ConfineError::new(Step::MountPackage, what(), e))?;
        mount(
            Some(&source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| ConfineError::new(Step::MountPackage, what(), e.into()))?;
        let read_only = if name == "tmp" { 0 } else { MOUNT_ATTR_RDONLY };
        set_attr(
            &target,
            false,
            read_only | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        )
        .map_err(|e| ConfineError::new(Step::MountPackage, what(), e))?;
    }
    Ok(())
}

fn mount_root_tmpfs(root: &Path) -> Result<(), ConfineError> {
    mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=1m,nr_inodes=256"),
    )
    .map_err(|e| {
        ConfineError::new(
            Step::RootTmpfs,
            format!("mount tmpfs on {}", root.display()),
            e.into(),
        )
    })
}

fn bind_host_dir(root: &Path, name: &str) -> Result<(), ConfineError> {
    let host = Path::new("/").join(name);
    let meta = match fs::symlink_metadata(&host) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => {
            return Err(ConfineError::new(
                Step::BindReadOnly,
                format!("stat {}", host.display()),
                err,
            ))
        }
    };
    let target = root.join(name);
    if meta.file_type().is_symlink() {
        let link = fs::read_link(&host)
            .and_then(|link| symlink(&link, &target).map(|()| link))
            .map_err(|e| {
                ConfineError::new(
                    Step::Symlink,
                    format!("recreate symlink {}", host.display()),
                    e,
                )
            })?;
        tracing::trace!(?link, "symlink");
        return Ok(());
    }
    if !meta.is_dir() {
        return Ok(());
    }
    bind_read_only(&host, &target)
}

/// Bind `source` (recursively) on `target` (created), then make every mount
/// of the bound tree read-only, nosuid and nodev. Flags the kernel locked
/// on the source (it came from a more privileged namespace) only ever get
/// added to, never cleared, so this cannot fail on them.
fn bind_read_only(source: &Path, target: &Path) -> Result<(), ConfineError> {
    let what = || {
        format!(
            "bind {} read-only on {}",
            source.display(),
            target.display()
        )
    };
    mkdir_all(target).map_err(|e| ConfineError::new(Step::BindReadOnly, what(), e))?;
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| {
            let err = ConfineError::new(Step::BindReadOnly, what(), e.into());
            if e == nix::errno::Errno::EACCES {
                err.with_hint("STATE/rootfs and everything in it must be readable by other users (directories 0755, files 0644)")
            } else {
                err
            }
        })?;
    make_private(target).map_err(|e| ConfineError::new(Step::BindReadOnly, what(), e.into()))?;
    set_attr(
        target,
        true,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    )
    .map_err(|e| ConfineError::new(Step::BindReadOnly, what(), e).with_hint(MOUNT_SETATTR_HINT))
}

/// A read-only tmpfs holding only binds of the host's harmless devices.
fn mount_dev(root: &Path) -> Result<(), ConfineError> {
    let dev = root.join("dev");
    let what = || format!("mount tmpfs on {}", dev.display());
    mkdir_all(&dev).map_err(|e| ConfineError::new(Step::MountDev, what(), e))?;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=64k,nr_inodes=64"),
    )
    .map_err(|e| ConfineError::new(Step::MountDev, what(), e.into()))?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        let target = dev.join(name);
        let what = || format!("bind {} on {}", host.display(), target.display());
        fs::File::create(&target).map_err(|e| ConfineError::new(Step::BindDevice, what(), e))?;
        mount(
            Some(&host),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| ConfineError::new(Step::BindDevice, what(), e.into()))?;
        make_private(&target).map_err(|e| ConfineError::new(Step::BindDevice, what(), e.into()))?;
        set_attr(&target, false, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)
            .map_err(|e| ConfineError::new(Step::BindDevice, what(), e))?;
    }
    set_attr(&dev, false, MOUNT_ATTR_RDONLY).map_err(|e| {
        ConfineError::new(
            Step::MountDev,
            format!("make {} read-only", dev.display()),
            e,
        )
    })
}

/// A fresh procfs of the sandbox's pid namespace showing only processes
/// (`subset=pid`: no /proc/sys, /proc/kcore...) and only those the viewer
/// may ptrace (`hidepid=invisible`).
fn mount_proc(root: &Path) -> Result<(), ConfineError> {
    let target = root.join("proc");
    let what = || {
        format!(
            "mount proc (subset=pid,hidepid=invisible) on {}",
            target.display()
        )
    };
    mkdir_all(&target).map_err(|e| ConfineError::new(Step::MountProc, what(), e))?;
    mount(
        Some("proc"),
        &target,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("subset=pid,hidepid=invisible"),
    )
    .map_err(|e| {
        let err = ConfineError::new(Step::MountProc, what(), e.into());
        match e {
            nix::errno::Errno::EPERM => err.with_hint(
                "the host's /proc must be fully visible (no overmounts) for a user namespace to mount procfs",
            ),
            nix::errno::Errno::EINVAL => err.with_hint("subset=pid needs Linux 5.8 or later"),
            _ => err,
        }
    })
}

/// Make `root` the root: afterwards nothing of the host's tree is reachable.
fn pivot(root: &Path) -> Result<(), ConfineError> {
    let step = |what: &str, e: io::Error| ConfineError::new(Step::PivotRoot, what.to_owned(), e);
    std::env::set_current_dir(root).map_err(|e| step(&format!("chdir {}", root.display()), e))?;
    mkdir_all(Path::new(OLD_ROOT)).map_err(|e| step("mkdir .oldroot", e))?;
    nix::unistd::pivot_root(".", OLD_ROOT).map_err(|e| {
        step("pivot_root(., .oldroot)", e.into()).with_hint(
            "pivot_root fails when the daemon's root is the initramfs (rootfs); run it from a real root filesystem",
        )
    })?;
    std::env::set_current_dir("/").map_err(|e| step("chdir /", e))?;
    let old = Path::new("/").join(OLD_ROOT);
    umount2(&old, MntFlags::MNT_DETACH).map_err(|e| {
        ConfineError::new(
            Step::DetachOldRoot,
            "umount2(/.oldroot, MNT_DETACH)",
            e.into(),
        )
    })?;
    fs::remove_dir(&old).map_err(|e| ConfineError::new(Step::DetachOldRoot, "rmdir /.oldroot", e))
}

fn remount_root_read_only() -> Result<(), ConfineError> {
    set_attr(Path::new("/"), false, MOUNT_ATTR_RDONLY).map_err(|e| {
        ConfineError::new(Step::RootReadOnly, "make / read-only", e).with_hint(MOUNT_SETATTR_HINT)
    })
}

const MOUNT_SETATTR_HINT: &str = "mount_setattr needs Linux 5.12 or later";

fn set_attr(path: &Path, recursive: bool, attrs: u64) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let flags = if recursive { AT_RECURSIVE as u32 } else { 0 };
    mount_setattr_at_cwd(&path, flags, attrs)
}

fn mkdir_all(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_runtime_is_where_lambda_says() {
        assert_eq!(
            format!("/{}", super::RUNTIME_MOUNT),
            crate::lambda::env::RUNTIME_DIR
        );
    }
}
