//! Syscalls the reactor's epoll backend needs that nix does not wrap:
//! `accept4` to an owned fd, reads into a Vec's spare capacity, and
//! per-call nonblocking (`RWF_NOWAIT`) reads and writes.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// accept4(2) with `SOCK_NONBLOCK | SOCK_CLOEXEC`, as an owned fd.
pub fn accept_nonblocking(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: null address pointers ask the kernel not to report the peer.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            flags,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: accept4 just returned this new descriptor; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// read(2) into `buf[len..capacity]`, growing `buf.len()` by what was read.
pub fn read_spare(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    read_spare_with(fd, buf, None)
}

/// Like [`read_spare`] but never blocks, without touching the file's
/// `O_NONBLOCK` flag (which a forked sandbox may share): preadv2 with
/// `RWF_NOWAIT` at the current position. `EAGAIN` when nothing is there;
/// `EOPNOTSUPP` when the file does not support per-call nonblocking reads.
pub fn read_spare_nowait(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    read_spare_with(fd, buf, Some(libc::RWF_NOWAIT))
}

fn read_spare_with(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, flags: Option<i32>) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    let n = match flags {
        // SAFETY: the pointer and length describe `buf`'s spare capacity,
        // which `buf` (borrowed mutably) keeps allocated during the call.
        None => unsafe { libc::read(fd.as_raw_fd(), iov.iov_base, iov.iov_len) },
        // SAFETY: as above, through one iovec that lives on this stack
        // frame; offset -1 means the current file position.
        Some(flags) => unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, -1, flags) },
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised `n <= spare.len()` bytes after `len`.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// write(2) that never blocks, without touching the file's `O_NONBLOCK`
/// flag: pwritev2 with `RWF_NOWAIT` at the current position. Errors as
/// for [`read_spare_nowait`].
pub fn write_nowait(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: the iovec describes `data`, borrowed for the call; the
    // kernel only reads through it. Offset -1 is the current position.
    let n = unsafe { libc::pwritev2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
