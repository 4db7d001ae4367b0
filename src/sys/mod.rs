//! The only place for `unsafe` and raw syscalls: thin safe wrappers that
//! return `io::Result` and hand out `OwnedFd`s.

pub mod fd;
pub mod malloc;
pub mod mount;
pub mod net;
pub mod process;
pub mod shm;
pub mod socket;
pub mod uring;
