//! The daemon's event loop: io_uring, or epoll through mio where io_uring
//! is refused.

/// Which kernel interface drives the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Uring,
    Epoll,
}
