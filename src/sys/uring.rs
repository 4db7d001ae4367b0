//! A small safe wrapper over an io_uring instance for the reactor.
//!
//! The one unsafe contract of io_uring is that every buffer, fd and timespec
//! an SQE points at must stay valid until that SQE's CQE arrives. [`Ring`]
//! meets it by owning those resources itself: [`Ring::push`] moves a
//! [`RingOp`] into the ring's slab, the SQE's `user_data` is the slab key,
//! and the resources leave the slab only in the [`RingCompletion`] built from
//! the matching CQE. Nobody else can free or move them in between, even if
//! the caller stops caring about the op (it can only [`Ring::cancel`] it,
//! which still ends in a CQE).
//!
//! The ring is created with `MADV_DONTFORK` on its mappings (so a forked
//! sandbox does not share the SQ/CQ memory) and its fd is `O_CLOEXEC`. A
//! forked child still holds the ring fd until it execs or closes it, so
//! sandbox setup must close inherited fds before running tenant code.
//!
//! The few plain syscalls the reactor's epoll fallback needs and nix does
//! not wrap live in [`fallback`].

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring, Probe};

pub mod fallback;

/// `user_data` of the `AsyncCancel` SQEs; their CQEs are ignored (the
/// cancelled op reports through its own CQE).
pub const USER_DATA_CANCEL: u64 = u64::MAX;
/// `user_data` of the NOP submitted once when the ring is probed.
pub const USER_DATA_PROBE: u64 = u64::MAX - 1;
/// Slab keys stay below this, so they never collide with a reserved value.
const MAX_KEY: u64 = u64::MAX - 16;
const _: () = assert!(MAX_KEY < USER_DATA_PROBE && USER_DATA_PROBE < USER_DATA_CANCEL);

/// Opcodes the reactor uses; [`Ring::new`] refuses a kernel that lacks one.
const REQUIRED_OPCODES: [(u8, &str); 7] = [
    (opcode::Nop::CODE, "nop"),
    (opcode::Accept::CODE, "accept"),
    (opcode::Read::CODE, "read"),
    (opcode::Write::CODE, "write"),
    (opcode::PollAdd::CODE, "poll_add"),
    (opcode::Timeout::CODE, "timeout"),
    (opcode::AsyncCancel::CODE, "async_cancel"),
];

/// One operation, with the resources its SQE points at.
#[derive(Debug)]
pub enum RingOp {
    /// accept4 with `SOCK_NONBLOCK | SOCK_CLOEXEC`.
    Accept { fd: Rc<OwnedFd> },
    /// read(2) into `buf[len..capacity]`.
    Read { fd: Rc<OwnedFd>, buf: Vec<u8> },
    /// write(2) of `buf[offset..]` (`offset <= buf.len()`).
    Write {
        fd: Rc<OwnedFd>,
        buf: Vec<u8>,
        offset: usize,
    },
    /// Poll for `POLLIN` once.
    PollIn { fd: Rc<OwnedFd> },
    /// A relative timer; completes with `-ETIME` when it fires.
    Timeout { after: Duration },
}

/// What the slab keeps alive for one in-flight SQE: everything its SQE
/// points at, and the fd so it cannot be closed (and its number reused)
/// while the kernel works on it.
#[derive(Debug)]
enum InFlight {
    Accept {
        fd: Rc<OwnedFd>,
    },
    Read {
        fd: Rc<OwnedFd>,
        buf: Vec<u8>,
    },
    Write {
        fd: Rc<OwnedFd>,
        buf: Vec<u8>,
        offset: usize,
    },
    PollIn {
        fd: Rc<OwnedFd>,
    },
    // Boxed: the SQE points at it, and the slab's Vec may reallocate.
    Timeout {
        ts: Box<Timespec>,
        after: Duration,
    },
}

#[derive(Debug)]
struct Slot {
    tag: u64,
    op: InFlight,
}

/// The CQE of one op, with its resources handed back.
#[derive(Debug)]
pub struct RingCompletion {
    /// The slab key that was the SQE's `user_data`.
    pub key: u64,
    /// The caller's tag given to [`Ring::push`].
    pub tag: u64,
    /// `cqe.res`: a count, a new fd (already moved into `accepted`), a poll
    /// mask, or a negated errno.
    pub res: i32,
    /// The buffer of a Read (its length grown by what was read) or a Write.
    pub buf: Option<Vec<u8>>,
    /// The socket an Accept produced.
    pub accepted: Option<OwnedFd>,
}

/// An io_uring instance plus the slab that owns each in-flight op.
pub struct Ring {
    ring: IoUring,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    reaped: VecDeque<RingCompletion>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("sq_entries", &self.ring.params().sq_entries())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Ring {
    /// Create a ring of `entries` SQEs (CQ four times that), check that the
    /// kernel supports what the reactor needs (no dropped CQEs on overflow,
    /// timeouts on wait, the opcodes above) and that a NOP round-trips.
    ///
    /// Fails with the kernel's error when io_uring is refused: `EPERM` when
    /// `kernel.io_uring_disabled` forbids it, `ENOSYS` under a seccomp
    /// filter or an old kernel; `Unsupported` when a feature is missing.
    pub fn new(entries: u32) -> io::Result<Ring> {
        let ring = IoUring::builder()
            .dontfork()
            .setup_cqsize(entries.saturating_mul(4))
            .build(entries)?;
        let params = ring.params();
        if !params.is_feature_nodrop() {
            return Err(unsupported("IORING_FEAT_NODROP"));
        }
        if !params.is_feature_ext_arg() {
            return Err(unsupported("IORING_FEAT_EXT_ARG"));
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in REQUIRED_OPCODES {
            if !probe.is_supported(code) {
                return Err(unsupported(name));
            }
        }
        let mut ring = Ring {
            ring,
            slots: Vec::new(),
            free: Vec::new(),
            reaped: VecDeque::new(),
        };
        ring.probe_nop()?;
        Ok(ring)
    }

    fn probe_nop(&mut self) -> io::Result<()> {
        let nop = opcode::Nop::new().build().user_data(USER_DATA_PROBE);
        // SAFETY: a NOP points at no memory.
        unsafe { self.ring.submission().push(&nop) }
            .map_err(|_| io::Error::other("fresh submission queue is full"))?;
        self.ring.submit_and_wait(1)?;
        let cqe = self
            .ring
            .completion()
            .next()
            .ok_or_else(|| io::Error::other("no completion for the probe nop"))?;
        match cqe.result() {
            res if res < 0 => Err(io::Error::from_raw_os_error(-res)),
            _ if cqe.user_data() != USER_DATA_PROBE => Err(io::Error::other(
                "probe nop completed with a wrong user_data",
            )),
            _ => Ok(()),
        }
    }

    /// Number of ops whose CQE has not been reaped yet.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Queue `op` (tagged `tag`) and return its slab key. When the
    /// submission queue is full, submits what is queued and retries. On
    /// failure the op is handed back untouched.
    pub fn push(&mut self, tag: u64, op: RingOp) -> Result<u64, (RingOp, io::Error)> {
        if let RingOp::Write { buf, offset, .. } = &op {
            if *offset > buf.len() {
                let err = io::Error::new(io::ErrorKind::InvalidInput, "write offset past end");
                return Err((op, err));
            }
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None if (self.slots.len() as u64) < MAX_KEY => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => return Err((op, io::Error::other("io_uring slab is full"))),
        };
        let key = index as u64;
        let slot = self.slots[index].insert(Slot {
            tag,
            op: InFlight::from(op),
        });
        let sqe = build_sqe(&mut slot.op).user_data(key);
        if let Err(err) = self.push_sqe(&sqe) {
            let slot = self.slots[index].take().expect("slot just filled");
            self.free.push(index);
            return Err((slot.op.into(), err));
        }
        Ok(key)
    }

    /// Ask the kernel to cancel the op `key`. It then completes with
    /// `-ECANCELED`, or with its real result if it raced; either way its
    /// resources come back in its own [`RingCompletion`].
    pub fn cancel(&mut self, key: u64) -> io::Result<()> {
        let sqe = opcode::AsyncCancel::new(key)
            .build()
            .user_data(USER_DATA_CANCEL);
        self.push_sqe(&sqe)
    }

    /// Push one SQE whose memory (if any) is owned by a slab slot.
    fn push_sqe(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        for _ in 0..3 {
            // SAFETY: `sqe` points only into a slab slot (buffer, fd Rc,
            // boxed timespec) that stays in `self.slots` until its CQE is
            // reaped in `reap` (or `Drop` waits for it, or leaks it), or
            // at no memory (cancel). The SQE points at the Vec's heap
            // allocation, which no one resizes while it is in the slot and
            // which stays put when the slab moves the Vec header.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            // Full: hand the queued SQEs to the kernel and retry.
            match self.submit() {
                Ok(()) => {}
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) => self.reap(),
                Err(err) => return Err(err),
            }
        }
        Err(io::Error::other(
            "io_uring submission queue stays full after submitting",
        ))
    }

    fn submit(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                other => return other.map(drop),
            }
        }
    }

    /// Submit what is queued and wait until at least one completion is
    /// reaped or `timeout` passes (`Some(ZERO)`: do not block). A timeout is
    /// not an error; a signal is `Interrupted`, after reaping what arrived.
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.reap();
        let want = usize::from(self.reaped.is_empty() && timeout != Some(Duration::ZERO));
        let res = match timeout {
            _ if want == 0 => self.ring.submit(),
            None => self.ring.submit_and_wait(want),
            Some(after) => {
                let ts = Timespec::from(after);
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
        };
        self.reap();
        match res {
            Ok(_) => Ok(()),
            Err(err) => match err.raw_os_error() {
                // ETIME: the wait timed out. EBUSY: CQ overflow backlog,
                // which the reap above made room for.
                Some(libc::ETIME | libc::EBUSY) => Ok(()),
                _ => Err(err),
            },
        }
    }

    /// Take the next reaped completion.
    pub fn pop(&mut self) -> Option<RingCompletion> {
        self.reaped.pop_front()
    }

    /// Move every CQE into `self.reaped`, flushing the kernel's overflow
    /// list (IORING_FEAT_NODROP keeps CQEs that did not fit) as we go.
    fn reap(&mut self) {
        loop {
            let cqes: Vec<cqueue::Entry> = self.ring.completion().collect();
            for cqe in cqes {
                self.complete(cqe);
            }
            if !self.ring.submission().cq_overflow() {
                break;
            }
            tracing::debug!("io_uring completion queue overflowed; flushing");
            // An enter with GETEVENTS moves overflowed CQEs into the ring.
            if let Err(err) = self.submit() {
                if err.raw_os_error() != Some(libc::EBUSY) {
                    tracing::warn!(?err, "io_uring overflow flush failed");
                    break;
                }
            }
        }
    }

    fn complete(&mut self, cqe: cqueue::Entry) {
        let key = cqe.user_data();
        if key == USER_DATA_CANCEL || key == USER_DATA_PROBE {
            return;
        }
        let Some(slot) = self.slots.get_mut(key as usize).and_then(Option::take) else {
            tracing::error!(key, "io_uring completion for an unknown slab key");
            return;
        };
        self.free.push(key as usize);
        let res = cqe.result();
        let mut done = RingCompletion {
            key,
            tag: slot.tag,
            res,
            buf: None,
            accepted: None,
        };
        match slot.op {
            InFlight::Accept { .. } if res >= 0 => {
                // SAFETY: the kernel just created this descriptor for the
                // accept SQE and nobody else has seen its number.
                done.accepted = Some(unsafe { OwnedFd::from_raw_fd(res) });
            }
            InFlight::Read { mut buf, .. } => {
                if res > 0 {
                    let grown = buf.len() + res as usize;
                    assert!(grown <= buf.capacity(), "read past spare capacity");
                    // SAFETY: the kernel wrote `res` bytes into the spare
                    // capacity starting at `buf.len()` (the SQE's pointer);
                    // `res` is bounded by the SQE's length, checked above.
                    unsafe { buf.set_len(grown) };
                }
                done.buf = Some(buf);
            }
            InFlight::Write { buf, .. } => done.buf = Some(buf),
            InFlight::Accept { .. } | InFlight::PollIn { .. } | InFlight::Timeout { .. } => {}
        }
        self.reaped.push_back(done);
    }
}

/// How long dropping a ring waits for its cancelled ops to complete.
const DROP_PATIENCE: Duration = Duration::from_secs(1);

impl Drop for Ring {
    /// Closing the ring fd does not stop an io-wq worker that is already
    /// reading into a slab buffer, so cancel every op and wait for its CQE
    /// before the slab is freed; whatever does not finish in time is
    /// leaked rather than freed under the kernel.
    fn drop(&mut self) {
        if self.in_flight() == 0 {
            return;
        }
        let keys: Vec<u64> = (0..self.slots.len() as u64)
            .filter(|k| self.slots[*k as usize].is_some())
            .collect();
        for key in keys {
            if let Err(err) = self.cancel(key) {
                tracing::warn!(key, ?err, "io_uring cancel on drop failed");
            }
        }
        let deadline = std::time::Instant::now() + DROP_PATIENCE;
        while self.in_flight() > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = self.submit_and_wait(Some(left));
            self.reaped.clear();
        }
        if self.in_flight() > 0 {
            tracing::error!(
                in_flight = self.in_flight(),
                "io_uring ops outlived their ring; leaking their buffers"
            );
            std::mem::forget(std::mem::take(&mut self.slots));
        }
    }
}

impl From<RingOp> for InFlight {
    fn from(op: RingOp) -> InFlight {
        match op {
            RingOp::Accept { fd } => InFlight::Accept { fd },
            RingOp::Read { fd, buf } => InFlight::Read { fd, buf },
            RingOp::Write { fd, buf, offset } => InFlight::Write { fd, buf, offset },
            RingOp::PollIn { fd } => InFlight::PollIn { fd },
            RingOp::Timeout { after } => InFlight::Timeout {
                ts: Box::new(Timespec::from(after)),
                after,
            },
        }
    }
}

impl From<InFlight> for RingOp {
    fn from(op: InFlight) -> RingOp {
        match op {
            InFlight::Accept { fd } => RingOp::Accept { fd },
            InFlight::Read { fd, buf } => RingOp::Read { fd, buf },
            InFlight::Write { fd, buf, offset } => RingOp::Write { fd, buf, offset },
            InFlight::PollIn { fd } => RingOp::PollIn { fd },
            InFlight::Timeout { after, .. } => RingOp::Timeout { after },
        }
    }
}

/// Build the SQE for a slab slot; it points into the slot's resources.
fn build_sqe(op: &mut InFlight) -> squeue::Entry {
    // -1: use (and advance) the file position, like read(2)/write(2); for
    // streams the kernel ignores it.
    const CURRENT_POS: u64 = u64::MAX;
    match op {
        InFlight::Accept { fd } => opcode::Accept::new(
            Fd(fd.as_raw_fd()),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
        .build(),
        InFlight::Read { fd, buf } => {
            let spare = buf.spare_capacity_mut();
            let len = u32::try_from(spare.len()).unwrap_or(u32::MAX);
            opcode::Read::new(Fd(fd.as_raw_fd()), spare.as_mut_ptr().cast(), len)
                .offset(CURRENT_POS)
                .build()
        }
        InFlight::Write { fd, buf, offset } => {
            let rest = &buf[*offset..];
            let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
            opcode::Write::new(Fd(fd.as_raw_fd()), rest.as_ptr(), len)
                .offset(CURRENT_POS)
                .build()
        }
        InFlight::PollIn { fd } => {
            opcode::PollAdd::new(Fd(fd.as_raw_fd()), libc::POLLIN as u32).build()
        }
        InFlight::Timeout { ts, .. } => opcode::Timeout::new(&**ts as *const Timespec).build(),
    }
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("io_uring lacks {what} (hint: needs linux 5.11 or later)"),
    )
}

/// pidfd_open(2) for tests (the daemon's own wrapper is in `sys::process`).
#[cfg(test)]
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall just returned this new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn maps_mention_io_uring(maps: &[u8]) -> bool {
        maps.windows(8).any(|w| w == b"io_uring")
    }

    #[test]
    fn full_queues_are_submitted_and_overflow_is_flushed() {
        // 8 SQEs and 32 CQEs for 200 timers firing together: pushes must
        // submit to make room, and CQEs past 32 wait in the kernel's
        // overflow list until reaped.
        let mut ring = Ring::new(8).unwrap();
        for tag in 0..200 {
            let after = Duration::from_millis(5);
            ring.push(tag, RingOp::Timeout { after }).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut tags = Vec::new();
        while tags.len() < 200 && Instant::now() < deadline {
            ring.submit_and_wait(Some(Duration::from_millis(100)))
                .unwrap();
            while let Some(done) = ring.pop() {
                assert_eq!(done.res, -libc::ETIME);
                tags.push(done.tag);
            }
        }
        tags.sort_unstable();
        assert_eq!(tags, (0..200).collect::<Vec<u64>>());
        assert_eq!(ring.in_flight(), 0);
    }

    #[test]
    fn dropping_a_ring_cancels_its_ops_before_freeing_them() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = Rc::new(OwnedFd::from(a));
        let mut ring = Ring::new(8).unwrap();
        let buf = Vec::with_capacity(64);
        ring.push(
            1,
            RingOp::Read {
                fd: fd.clone(),
                buf,
            },
        )
        .unwrap();
        let after = Duration::from_secs(60);
        ring.push(2, RingOp::Timeout { after }).unwrap();
        ring.submit_and_wait(Some(Duration::ZERO)).unwrap();
        assert_eq!(ring.in_flight(), 2);
        drop(ring);
        // The slab released its clone: the read was cancelled, not leaked.
        assert_eq!(Rc::strong_count(&fd), 1);
    }

    #[test]
    fn a_forked_child_does_not_inherit_the_ring_mapping() {
        let ring = Ring::new(8).unwrap();
        let maps = std::fs::read("/proc/self/maps").unwrap();
        assert!(maps_mention_io_uring(&maps), "ring mapping not visible");
        // The child must not allocate (other test threads may hold the
        // allocator lock), so its buffer is allocated before the fork.
        let mut buf = vec![0u8; 1 << 20];
        // SAFETY: the child only uses async-signal-safe syscalls on
        // memory allocated before the fork, then leaves through _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = child_maps_check(&mut buf);
                // SAFETY: _exit ends the forked child without running the
                // parent's atexit handlers or destructors.
                unsafe { libc::_exit(code) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        drop(ring);
    }

    /// In a forked child: 0 when its maps show no io_uring mapping.
    fn child_maps_check(buf: &mut [u8]) -> i32 {
        use nix::fcntl::{open, OFlag};
        use nix::sys::stat::Mode;
        let Ok(fd) = open("/proc/self/maps", OFlag::O_RDONLY, Mode::empty()) else {
            return 2;
        };
        let mut len = 0;
        while len < buf.len() {
            match nix::unistd::read(&fd, &mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(_) => return 3,
            }
        }
        if maps_mention_io_uring(&buf[..len]) {
            1
        } else {
            0
        }
    }
}
