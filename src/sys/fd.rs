//! File descriptor plumbing.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Take ownership of a descriptor this process was started with at a fixed
/// number (a runtime's ring fds, say).
///
/// Fails with `EBADF` when `fd` is not open, so a missing descriptor is an
/// error rather than a silent use of whatever gets that number later.
pub fn inherited(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only inspects the descriptor table entry.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and, by the contract
    // of this function, was handed to this process for it alone, so no
    // other owner will close it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fcntl(F_DUPFD_CLOEXEC, min)`: a close-on-exec duplicate numbered `min`
/// or above (so moving it onto a low fixed number cannot clobber another
/// source).
pub fn dup_at_least(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor and touches no memory.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// A close-on-exec duplicate of descriptor `fd` this process was started
/// with, leaving `fd` itself open (and inheritable) for a program exec'd
/// later. Fails with `EBADF` when `fd` is not open.
pub fn dup_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor and touches no memory;
    // on a closed `fd` it fails with EBADF.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherited_rejects_closed_descriptor() {
        let err = inherited(987_654).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn dup_inherited_leaves_original_open() {
        use std::os::fd::IntoRawFd;
        let raw = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
        drop(dup_inherited(raw).unwrap());
        let original = inherited(raw).unwrap();
        assert_eq!(
            dup_inherited(987_654).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        drop(original);
    }

    #[test]
    fn dup_at_least_numbers_high_and_cloexec() {
        use std::os::fd::AsFd;
        let file = std::fs::File::open("/dev/null").unwrap();
        let dup = dup_at_least(file.as_fd(), 64).unwrap();
        assert!(dup.as_raw_fd() >= 64);
        // SAFETY: F_GETFD on a descriptor we own.
        let flags = unsafe { libc::fcntl(dup.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }
}
