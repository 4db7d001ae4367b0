//! Shared memory for the daemon↔runtime rings: a sealed memfd, a
//! bounds-checked view of its mapping, and placing descriptors at fixed
//! numbers in a spawned child (how a runtime finds its ring at fds 3, 4, 5).
//!
//! Everything here treats the mapped bytes as memory a hostile process may
//! write at any moment: nothing is ever interpreted in place, callers copy
//! bytes out and validate the copy, and the only typed access is through
//! atomics.

use std::ffi::CStr;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{madvise, mmap, munmap, MapFlags, MmapAdvise, ProtFlags};

/// Create a memfd of `size` bytes (zero-filled) that can never change size
/// again: sealed against shrinking, growing and further sealing, so a
/// process holding it cannot truncate it under a peer's mapping (which would
/// SIGBUS the peer on its next access). The descriptor is close-on-exec.
pub fn sealed_memfd(name: &CStr, size: usize) -> io::Result<OwnedFd> {
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let len = i64::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    nix::unistd::ftruncate(&fd, len)?;
    fcntl(
        &fd,
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
        ),
    )?;
    Ok(fd)
}

/// Current size in bytes of the file behind `fd`.
pub fn file_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let stat = nix::sys::stat::fstat(fd)?;
    usize::try_from(stat.st_size).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// An offset/length pair fell outside a [`SharedMapping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("range {offset}+{len} is outside the {size}-byte shared mapping")]
pub struct OutOfBounds {
    pub offset: usize,
    pub len: usize,
    pub size: usize,
}

/// A read-write `MAP_SHARED` mapping of a whole file (a ring memfd), unmapped
/// on drop. Access is bounds-checked: bytes are copied in and out, 64-bit
/// words are reached as atomics.
#[derive(Debug)]
pub struct SharedMapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is process-wide memory, not tied to the thread that
// created it; moving the owner to another thread moves the only handle that
// unmaps it. (Not `Sync`: `copy_in` through `&self` from two threads would
// race on plain bytes.)
unsafe impl Send for SharedMapping {}

impl SharedMapping {
    /// Map the first `len` bytes of `fd` read-write and shared. The caller
    /// checks `len` against the file's size first ([`file_size`]); the file
    /// must be sealed against shrinking ([`sealed_memfd`]) or owned by a
    /// trusted party, otherwise an access past its end raises SIGBUS.
    ///
    /// The mapping is marked `MADV_DONTFORK`: a child forked by this process
    /// (a sandbox being created) never inherits another sandbox's ring.
    pub fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<SharedMapping> {
        let length = NonZeroUsize::new(len).ok_or(io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh mapping chosen by the kernel (no address hint), so
        // it cannot alias any Rust object; it is owned by the returned value
        // and unmapped exactly once, in Drop.
        let ptr = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )?
        };
        let mapping = SharedMapping {
            ptr: ptr.cast(),
            len,
        };
        // SAFETY: the range is exactly the mapping created above; advice
        // does not change its contents.
        unsafe { madvise(ptr, len, MmapAdvise::MADV_DONTFORK)? };
        Ok(mapping)
    }

    /// Size of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), OutOfBounds> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(OutOfBounds {
                offset,
                len,
                size: self.len,
            }),
        }
    }

    /// The 64-bit word at `offset` as an atomic.
    ///
    /// # Panics
    /// When `offset` is not 8-byte aligned or the word is outside the
    /// mapping. Offsets are layout constants, never bytes read from the
    /// mapping, so this is a bug in the caller, not hostile input.
    pub fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        assert!(
            offset.is_multiple_of(8),
            "atomic at unaligned offset {offset}"
        );
        if let Err(err) = self.check(offset, 8) {
            panic!("atomic_u64: {err}");
        }
        // SAFETY: in bounds and 8-aligned (checked above; the mapping itself
        // is page-aligned); the memory stays mapped for as long as `&self`
        // lives. Any bit pattern is a valid u64, and the peer process only
        // ever touches this word through atomic instructions of its own, so
        // viewing it as an AtomicU64 is sound.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// Copy `src` into the mapping at `offset`.
    pub fn copy_in(&self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        self.check(offset, src.len())?;
        // SAFETY: destination range checked in bounds of the live mapping;
        // `src` is a Rust slice, which cannot overlap a region no Rust
        // reference points into. The region being written belongs to this
        // side by the ring protocol (between the producer's tail and the
        // consumer's head); a misbehaving peer writing it concurrently only
        // changes bytes it could change anyway.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len());
        }
        Ok(())
    }

    /// Copy bytes at `offset` out of the mapping into `dst`. The copy is
    /// plain bytes: callers validate it after the copy, never the mapping.
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        self.check(offset, dst.len())?;
        // SAFETY: source range checked in bounds of the live mapping; `dst`
        // is an exclusive Rust slice, so no overlap. u8 has no invalid bit
        // patterns, so even bytes a hostile peer rewrites during the copy
        // yield a well-defined (if meaningless) buffer, which the caller
        // validates.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
        Ok(())
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe the mapping created in `map`, owned
        // by this value alone; every reference handed out borrows `self`,
        // so none outlives this call.
        if let Err(err) = unsafe { munmap(self.ptr.cast(), self.len) } {
            tracing::warn!(?err, len = self.len, "munmap of a ring mapping failed");
        }
    }
}

/// Arrange for `cmd`'s child to find each `(fd, target)` at descriptor
/// number `target` (inheritable, i.e. without close-on-exec), as a runtime
/// expects its ring at 3, 4, 5 and its control socket at 6.
///
/// The descriptors are owned by the command until it is dropped; the
/// parent's copies stay close-on-exec. Sources are first duplicated above
/// every target, so a source that already sits on another entry's target
/// number is not clobbered before it is placed.
pub fn place_fds(cmd: &mut Command, fds: Vec<(OwnedFd, i32)>) {
    let floor = fds.iter().map(|(_, target)| *target).max().unwrap_or(2) + 1;
    // SAFETY: the closure runs in the forked child before exec and only
    // calls fcntl(F_DUPFD_CLOEXEC) and dup2, both async-signal-safe; it does
    // not allocate (it walks a Vec built in the parent). The raw numbers it
    // uses are owned by `fds`, which the closure owns and keeps open for the
    // command's lifetime.
    unsafe {
        cmd.pre_exec(move || {
            let mut staged = [0i32; 16];
            if fds.len() > staged.len() {
                return Err(io::ErrorKind::InvalidInput.into());
            }
            for (slot, (fd, _)) in staged.iter_mut().zip(&fds) {
                let dup = libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_DUPFD_CLOEXEC, floor);
                if dup < 0 {
                    return Err(io::Error::last_os_error());
                }
                *slot = dup;
            }
            for (staged_fd, (_, target)) in staged.iter().zip(&fds) {
                // dup2 clears FD_CLOEXEC on the target: it survives exec,
                // while the staged copy (close-on-exec) does not.
                if libc::dup2(*staged_fd, *target) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn sealed_memfd_cannot_change_size() {
        let fd = sealed_memfd(c"sprout-test", 8192).unwrap();
        assert_eq!(file_size(fd.as_fd()).unwrap(), 8192);
        let shrink = nix::unistd::ftruncate(&fd, 4096).unwrap_err();
        assert_eq!(shrink, nix::errno::Errno::EPERM);
        let grow = nix::unistd::ftruncate(&fd, 16384).unwrap_err();
        assert_eq!(grow, nix::errno::Errno::EPERM);
        let seals = fcntl(&fd, FcntlArg::F_GET_SEALS).unwrap();
        let want = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        assert_eq!(seals & want.bits(), want.bits());
    }

    #[test]
    fn two_mappings_of_one_memfd_share_bytes_and_atomics() {
        let fd = sealed_memfd(c"sprout-test", 4096).unwrap();
        let a = SharedMapping::map(fd.as_fd(), 4096).unwrap();
        let b = SharedMapping::map(fd.as_fd(), 4096).unwrap();
        a.copy_in(100, b"hello").unwrap();
        let mut out = [0u8; 5];
        b.copy_out(100, &mut out).unwrap();
        assert_eq!(&out, b"hello");
        a.atomic_u64(128).store(42, Ordering::Release);
        assert_eq!(b.atomic_u64(128).load(Ordering::Acquire), 42);
    }

    #[test]
    fn copies_are_bounds_checked() {
        let fd = sealed_memfd(c"sprout-test", 4096).unwrap();
        let map = SharedMapping::map(fd.as_fd(), 4096).unwrap();
        assert!(map.copy_in(4090, &[0u8; 6]).is_ok());
        let err = map.copy_in(4090, &[0u8; 7]).unwrap_err();
        assert_eq!(
            err,
            OutOfBounds {
                offset: 4090,
                len: 7,
                size: 4096
            }
        );
        assert!(map.copy_out(usize::MAX, &mut [0u8; 2]).is_err());
    }

    #[test]
    #[should_panic(expected = "unaligned")]
    fn unaligned_atomic_panics() {
        let fd = sealed_memfd(c"sprout-test", 4096).unwrap();
        let map = SharedMapping::map(fd.as_fd(), 4096).unwrap();
        map.atomic_u64(4);
    }

    #[test]
    fn place_fds_moves_descriptors_to_their_targets() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut cmd = Command::new("/bin/sh");
        // The child sees the pipe's write end at fd 5 and its read end at 3
        // (in the reverse of the numbers the parent holds them at).
        cmd.args([
            "-c",
            "echo placed >&5; test -e /proc/self/fd/3 && echo three >&5",
        ]);
        place_fds(&mut cmd, vec![(w, 5), (r.try_clone().unwrap(), 3)]);
        let status = cmd.status().unwrap();
        drop(cmd);
        assert!(status.success());
        let mut buf = [0u8; 64];
        let n = nix::unistd::read(&r, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"placed\nthree\n");
    }
}
