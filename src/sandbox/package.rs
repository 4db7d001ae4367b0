//! A function's files inside its sandbox: its code at `/var/task`, its
//! merged layers at `/opt` and a sized scratch `/tmp`, mounted by the
//! daemon *after* the sandbox was confined, so that a pooled sandbox can be
//! handed a function without ever holding a mount privilege.
//!
//! They travel by mount propagation. At start the daemon moves into a mount
//! namespace of its own (nothing it mounts shows on the host, and all of it
//! goes with the daemon) and makes STATE/rootfs/mounts a shared mount.
//! Each sandbox gets STATE/rootfs/mounts/ID/{task,opt,tmp}; its init binds
//! them on its /var/task, /opt and /tmp before `pivot_root`
//! (`rootfs::bind_package_dirs`). Cloned into a less privileged user
//! namespace, those binds are slaves of the daemon's shared mount. When the
//! daemon assigns the sandbox a function ([`SandboxMounts::attach`]), it
//! attaches a read-only clone of the code (and layers) under the sandbox's
//! directory; the kernel copies each mount into the sandbox, locked (it
//! came from a more privileged namespace), before the assignment message
//! is sent. The /tmp tmpfs is mounted when the sandbox is created, at
//! Lambda's default size, and only resized at assignment when the
//! function asks for another: a cold start attaches one mount, or two
//! with layers.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::SandboxError;
use crate::sys::mount::move_mount_to;

/// Relative to STATE/rootfs (the init's working directory): the shared
/// mount holding one directory per sandbox.
pub const MOUNTS: &str = "mounts";

/// What the daemon mounts for a sandbox: the directory under
/// STATE/rootfs/mounts/ID and where the init binds it in the sandbox.
pub const PACKAGE_DIRS: [(&str, &str); 3] = [("task", "var/task"), ("opt", "opt"), ("tmp", "tmp")];

/// The function's files a sandbox is given with its assignment.
#[derive(Debug)]
pub struct Package<'a> {
    /// A detached read-only tree of the version's code (from
    /// [`super::open_code_mount`]), attached at `/var/task`.
    pub code: OwnedFd,
    /// The version's merged layers, mounted read-only at `/opt` (an empty
    /// directory without layers).
    pub layers: Option<&'a Path>,
    /// The size of `/tmp` in bytes (Lambda's ephemeral storage).
    pub tmp_bytes: u64,
}

/// Inodes of `/tmp` per MiB of its size (64 KiB per inode on average; a
/// 512 MiB /tmp holds 32768 files).
const TMP_INODES_PER_MIB: u64 = 64;

/// The /tmp a sandbox is created with: Lambda's default ephemeral storage.
pub const CREATED_TMP_BYTES: u64 = 512 << 20;

/// The daemon's side: STATE/rootfs/mounts, shared, in the daemon's own
/// mount namespace.
#[derive(Debug)]
pub struct PackageMounts {
    root: PathBuf,
}

impl PackageMounts {
    /// Move the calling thread (the daemon's event loop, which clones every
    /// sandbox) into a mount namespace of its own, receiving the host's
    /// mounts but never sending it any, and make `rootfs/mounts` a fresh
    /// shared mount there. What an earlier run left in it (directories
    /// only: its mounts died with its namespace) is removed.
    pub fn prepare(rootfs: &Path) -> Result<PackageMounts, SandboxError> {
        let root = rootfs.join(MOUNTS);
        let err = |what: &'static str, source: io::Error| SandboxError::PackageMounts {
            what,
            path: root.clone(),
            source,
        };
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(|e| err("unshare(CLONE_NEWNS) for the daemon", e.into()))?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        )
        .map_err(|e| err("make / rslave in the daemon's mount namespace", e.into()))?;
        // A copy of a mount an earlier daemon of this thread made.
        while umount2(&root, MntFlags::MNT_DETACH).is_ok() {}
        match fs::remove_dir_all(&root) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(err("remove an earlier run's mount points", e))
            }
            _ => {}
        }
        mkdir(&root).map_err(|e| err("create", e))?;
        mount(
            Some(&root),
            &root,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| err("bind on itself", e.into()))?;
        mount(
            None::<&str>,
            &root,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .map_err(|e| err("make shared", e.into()))?;
        Ok(PackageMounts { root })
    }

    /// Sandbox `id`'s empty mount points, before it is cloned.
    pub(super) fn create(&self, id: u64) -> Result<SandboxMounts, SandboxError> {
        let mut mounts = SandboxMounts {
            id,
            dir: self.root.join(id.to_string()),
            attached: Vec::new(),
        };
        let made = mkdir(&mounts.dir).and_then(|()| {
            PACKAGE_DIRS
                .iter()
                .try_for_each(|(name, _)| mkdir(&mounts.dir.join(name)))
        });
        made.map_err(|source| SandboxError::PackageMount {
            id,
            what: "create the mount points".into(),
            source,
        })?;
        mounts.mount_tmp(CREATED_TMP_BYTES)?;
        Ok(mounts)
    }
}

/// Relative to STATE/rootfs: sandbox `id`'s directory of mount points.
pub(super) fn sandbox_dir_rel(id: u64) -> String {
    format!("{MOUNTS}/{id}")
}

/// One sandbox's mount points, and what the daemon attached there.
/// Dropping it detaches the mounts and removes the directories.
#[derive(Debug)]
pub(super) struct SandboxMounts {
    id: u64,
    dir: PathBuf,
    attached: Vec<&'static str>,
}

impl SandboxMounts {
    /// Attach `package` under the sandbox's directory: the code and layers
    /// as read-only, nosuid, nodev clones (read-only before they are
    /// attached, so no copy is ever writable), and /tmp resized when the
    /// function wants another size than it was created with.
    pub(super) fn attach(&mut self, package: Package<'_>) -> Result<(), SandboxError> {
        self.attach_tree("task", &package.code, "the code")?;
        if let Some(layers) = package.layers {
            let tree = super::open_code_mount(layers)?;
            self.attach_tree("opt", &tree, "the layers")?;
        }
        if package.tmp_bytes != CREATED_TMP_BYTES {
            self.tmpfs(package.tmp_bytes, MsFlags::MS_REMOUNT)?;
        }
        Ok(())
    }

    fn attach_tree(
        &mut self,
        name: &'static str,
        tree: &OwnedFd,
        what: &str,
    ) -> Result<(), SandboxError> {
        let target = self.dir.join(name);
        c_path(&target)
            .and_then(|path| move_mount_to(tree.as_fd(), &path))
            .map_err(|source| SandboxError::PackageMount {
                id: self.id,
                what: format!("attach {what} on {}", target.display()),
                source,
            })?;
        self.attached.push(name);
        Ok(())
    }

    fn mount_tmp(&mut self, bytes: u64) -> Result<(), SandboxError> {
        self.tmpfs(bytes, MsFlags::empty())?;
        self.attached.push("tmp");
        Ok(())
    }

    /// Mount (or, with `MS_REMOUNT`, resize) the sandbox's /tmp tmpfs.
    fn tmpfs(&self, bytes: u64, remount: MsFlags) -> Result<(), SandboxError> {
        let target = self.dir.join("tmp");
        let inodes = (bytes >> 20).max(1) * TMP_INODES_PER_MIB;
        let options = format!("size={bytes},nr_inodes={inodes},mode=1777");
        mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            remount | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(|e| SandboxError::PackageMount {
            id: self.id,
            what: format!("mount tmpfs ({options}) on {}", target.display()),
            source: e.into(),
        })
    }
}

impl Drop for SandboxMounts {
    fn drop(&mut self) {
        for name in self.attached.drain(..).rev() {
            let target = self.dir.join(name);
            if let Err(err) = umount2(&target, MntFlags::MNT_DETACH) {
                tracing::warn!(sandbox = self.id, target = %target.display(), %err, "detach a package mount");
            }
        }
        for (name, _) in PACKAGE_DIRS {
            let _ = fs::remove_dir(self.dir.join(name));
        }
        if let Err(err) = fs::remove_dir(&self.dir) {
            if err.kind() != io::ErrorKind::NotFound {
                tracing::warn!(sandbox = self.id, dir = %self.dir.display(), %err, "remove the sandbox's mount points");
            }
        }
    }
}

fn mkdir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o755).create(path)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}
