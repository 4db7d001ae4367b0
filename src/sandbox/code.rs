//! The code directory a sandbox gets: a detached, read-only bind mount
//! whose descriptor is sent with the assignment. `..` cannot leave a
//! detached mount's root, so the descriptor reaches nothing else.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::SandboxError;
use crate::sys::mount::{
    mount_setattr, open_tree_at_cwd, AT_RECURSIVE, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY, OPEN_TREE_CLOEXEC, OPEN_TREE_CLONE,
};

/// `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)` of `dir`, then
/// `mount_setattr(RDONLY | NOSUID | NODEV)` on the whole detached tree.
/// The mount goes away when the last descriptor to it is closed.
pub fn open_code_mount(dir: &Path) -> Result<OwnedFd, SandboxError> {
    let err = |source| SandboxError::CodeMount {
        path: dir.to_path_buf(),
        source,
    };
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    let tree = open_tree_at_cwd(
        &path,
        OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE as u32,
    )
    .map_err(err)?;
    mount_setattr(
        tree.as_fd(),
        c"",
        libc::AT_EMPTY_PATH as u32 | AT_RECURSIVE as u32,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    )
    .map_err(err)?;
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;

    #[test]
    fn code_mount_is_read_only_and_closed_above() {
        if !crate::testing::require_root("sandbox::code::code_mount_is_read_only_and_closed_above")
        {
            return;
        }
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("secret"), b"s").unwrap();
        let code = outer.path().join("code");
        std::fs::create_dir(&code).unwrap();
        std::fs::write(code.join("bootstrap"), b"x").unwrap();
        let mount = open_code_mount(&code).unwrap();
        assert!(openat(mount.as_fd(), "bootstrap", OFlag::O_RDONLY, Mode::empty()).is_ok());
        assert_eq!(
            openat(mount.as_fd(), "bootstrap", OFlag::O_WRONLY, Mode::empty()).unwrap_err(),
            nix::errno::Errno::EROFS
        );
        assert_eq!(
            openat(
                mount.as_fd(),
                "new",
                OFlag::O_CREAT | OFlag::O_WRONLY,
                Mode::from_bits_truncate(0o644)
            )
            .unwrap_err(),
            nix::errno::Errno::EROFS
        );
        // `..` of a detached mount's root is the root itself.
        assert!(openat(mount.as_fd(), "../secret", OFlag::O_RDONLY, Mode::empty()).is_err());
        assert!(openat(
            mount.as_fd(),
            "../bootstrap",
            OFlag::O_RDONLY,
            Mode::empty()
        )
        .is_ok());
    }
}
