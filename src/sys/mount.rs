//! The new mount API calls nix does not wrap: `open_tree` (detached bind
//! mounts), `mount_setattr` (recursive read-only, nosuid, nodev) and
//! `move_mount` (attaching a detached tree).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub use libc::{
    AT_RECURSIVE, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
    OPEN_TREE_CLOEXEC, OPEN_TREE_CLONE,
};

/// `open_tree(dir, path, flags)`: with `OPEN_TREE_CLONE` a detached copy of
/// the mount tree at `path` (relative to `dir`), owned by the returned fd.
pub fn open_tree(dir: BorrowedFd<'_>, path: &CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: `path` is NUL-terminated and alive for the call; `dir` is live.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, dir.as_raw_fd(), path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that only we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `open_tree` relative to the current directory (or with an absolute path).
pub fn open_tree_at_cwd(path: &CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: AT_FDCWD is a valid "directory descriptor" for the whole call.
    let cwd = unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) };
    open_tree(cwd, path, flags)
}

/// `mount_setattr(dir, path, flags, {attr_set: set})`: add mount attributes
/// (with `AT_RECURSIVE` in `flags`, to every mount of the tree).
pub fn mount_setattr(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_uint,
    set: u64,
) -> io::Result<()> {
    let mut attr = libc::mount_attr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` is a live, correctly sized mount_attr; `path` is
    // NUL-terminated; `dir` is live.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dir.as_raw_fd(),
            path.as_ptr(),
            flags,
            &mut attr as *mut libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `move_mount(MOVE_MOUNT_F_EMPTY_PATH)`: attach the detached tree `tree`
/// (from [`open_tree`] with `OPEN_TREE_CLONE`) on `target`, with the
/// attributes it already has, in one step.
pub fn move_mount_to(tree: BorrowedFd<'_>, target: &CStr) -> io::Result<()> {
    /// `MOVE_MOUNT_F_EMPTY_PATH` from linux/mount.h.
    const F_EMPTY_PATH: libc::c_uint = 0x4;
    // SAFETY: both paths are NUL-terminated and alive for the call; `tree`
    // is live; AT_FDCWD resolves `target` from the current directory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            F_EMPTY_PATH,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `mount_setattr` on a path relative to the current directory.
pub fn mount_setattr_at_cwd(path: &CStr, flags: libc::c_uint, set: u64) -> io::Result<()> {
    // SAFETY: AT_FDCWD is a valid "directory descriptor" for the whole call.
    let cwd = unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) };
    mount_setattr(cwd, path, flags, set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn detached_read_only_tree_refuses_writes() {
        if !crate::testing::require_root("sys::mount::detached_read_only_tree_refuses_writes") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let path = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        let tree = open_tree_at_cwd(
            &path,
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE as u32,
        )
        .unwrap();
        mount_setattr(
            tree.as_fd(),
            c"",
            libc::AT_EMPTY_PATH as u32 | AT_RECURSIVE as u32,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        )
        .unwrap();
        let file = nix::fcntl::openat(
            tree.as_fd(),
            "f",
            nix::fcntl::OFlag::O_RDWR,
            nix::sys::stat::Mode::empty(),
        );
        assert_eq!(file.unwrap_err(), nix::errno::Errno::EROFS);
        let file = nix::fcntl::openat(
            tree.as_fd(),
            "f",
            nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        );
        assert!(file.is_ok());
    }
}
