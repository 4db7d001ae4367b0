//! File descriptor plumbing.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherited_rejects_closed_descriptor() {
        let err = inherited(987_654).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }
}
