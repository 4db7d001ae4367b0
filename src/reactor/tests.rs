//! Behaviour tests, each run against both backends.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::*;

const PATIENCE: Duration = Duration::from_secs(5);

/// One reactor per backend; both must behave the same.
fn reactors() -> Vec<Reactor> {
    [Backend::Uring, Backend::Epoll]
        .into_iter()
        .map(|b| Reactor::new(Some(b)).unwrap_or_else(|e| panic!("{b} reactor: {e}")))
        .collect()
}

/// Wait until `n` completions arrived; panic after `PATIENCE`.
fn collect(r: &mut Reactor, n: usize) -> Vec<Completion> {
    let deadline = Instant::now() + PATIENCE;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{}: {} of {n} completions",
            r.backend(),
            out.len()
        );
        r.wait(&mut out, Some(left)).unwrap();
    }
    assert_eq!(out.len(), n, "{}: more completions than ops", r.backend());
    out
}

/// Wait for at least one completion; panic after `PATIENCE`.
fn some(r: &mut Reactor) -> Vec<Completion> {
    let mut out = Vec::new();
    r.wait(&mut out, Some(PATIENCE)).unwrap();
    assert!(!out.is_empty(), "{}: nothing completed", r.backend());
    out
}

fn one(r: &mut Reactor) -> Completion {
    collect(r, 1).pop().unwrap()
}

fn pair() -> (Rc<OwnedFd>, Rc<OwnedFd>) {
    let (a, b) = UnixStream::pair().unwrap();
    (Rc::new(a.into()), Rc::new(b.into()))
}

fn errno(c: &Completion) -> Option<i32> {
    c.result.as_ref().err().and_then(io::Error::raw_os_error)
}

#[test]
fn probe_picks_uring_here_and_epoll_can_be_forced() {
    let uring_allowed = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map_or(true, |v| v.trim() == "0");
    let auto = Reactor::new(None).unwrap();
    if uring_allowed {
        assert_eq!(auto.backend(), Backend::Uring);
    } else {
        assert_eq!(auto.backend(), Backend::Epoll);
    }
    let epoll = Reactor::new(Some(Backend::Epoll)).unwrap();
    assert_eq!(epoll.backend(), Backend::Epoll);

    for b in [Backend::Uring, Backend::Epoll] {
        assert_eq!(b.as_str().parse::<Backend>().unwrap(), b);
        assert_eq!(b.to_string(), b.as_str());
    }
    assert!("kqueue".parse::<Backend>().is_err());
}

#[test]
fn socketpair_round_trip_with_partial_large_write() {
    for mut r in reactors() {
        let b = r.backend();
        let (a, z) = pair();
        let payload: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let total = payload.len();

        // Nobody reads yet: the socket buffer takes only part of 4 MiB.
        r.submit(
            1,
            Op::Write {
                fd: a.clone(),
                buf: payload,
                offset: 0,
            },
        );
        let w = one(&mut r);
        assert_eq!(w.token, 1);
        let mut offset = w.result.unwrap();
        assert!(
            offset > 0 && offset < total,
            "{b}: wrote {offset} of {total}"
        );
        let payload = w.buf.unwrap();

        let mut got = Vec::with_capacity(total);
        let mut pending_write = Some(payload);
        while got.len() < total {
            if let Some(buf) = pending_write.take() {
                if offset < total {
                    r.submit(
                        1,
                        Op::Write {
                            fd: a.clone(),
                            buf,
                            offset,
                        },
                    );
                } else {
                    pending_write = Some(buf);
                }
            }
            r.submit(
                2,
                Op::Read {
                    fd: z.clone(),
                    buf: Vec::with_capacity(256 << 10),
                },
            );
            let mut read_done = false;
            while !read_done {
                for c in some(&mut r) {
                    match c.token {
                        1 => {
                            offset += c.result.unwrap();
                            pending_write = c.buf;
                        }
                        2 => {
                            let n = c.result.unwrap();
                            assert!(n > 0, "{b}: early eof");
                            got.extend_from_slice(&c.buf.unwrap());
                            read_done = true;
                        }
                        t => panic!("{b}: unknown token {t}"),
                    }
                }
            }
        }
        assert_eq!(offset, total, "{b}");
        assert_eq!(got, pending_write.unwrap(), "{b}: bytes differ");
        assert_eq!(r.in_flight(), 0, "{b}");

        // EOF once the writer is gone.
        drop(a);
        let buf = Vec::with_capacity(16);
        r.submit(3, Op::Read { fd: z.clone(), buf });
        let c = one(&mut r);
        assert_eq!(c.result.unwrap(), 0, "{b}: eof");
    }
}

#[test]
fn accept_then_read_what_the_client_sent() {
    for mut r in reactors() {
        let b = r.backend();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        let listener = UnixListener::bind(&path).unwrap();
        let listener: Rc<OwnedFd> = Rc::new(listener.into());

        r.submit(
            7,
            Op::Accept {
                fd: listener.clone(),
            },
        );
        let mut out = Vec::new();
        r.wait(&mut out, Some(Duration::from_millis(20))).unwrap();
        assert!(out.is_empty(), "{b}: accepted with no client");

        let mut client = UnixStream::connect(&path).unwrap();
        client.write_all(b"hello sprout").unwrap();
        let c = one(&mut r);
        assert_eq!((c.token, c.result.unwrap()), (7, 0), "{b}");
        let conn = c.accepted.expect("accepted socket");
        let flags = OFlag::from_bits_retain(fcntl(&conn, FcntlArg::F_GETFL).unwrap());
        assert!(flags.contains(OFlag::O_NONBLOCK), "{b}: not nonblocking");
        let fd_flags = fcntl(&conn, FcntlArg::F_GETFD).unwrap();
        assert_ne!(fd_flags & libc::FD_CLOEXEC, 0, "{b}: not cloexec");

        let conn = Rc::new(conn);
        let buf = Vec::with_capacity(64);
        r.submit(8, Op::Read { fd: conn, buf });
        let c = one(&mut r);
        assert_eq!(c.result.unwrap(), 12, "{b}");
        assert_eq!(c.buf.unwrap(), b"hello sprout", "{b}");
    }
}

#[test]
fn eventfd_read_completes_when_bumped() {
    for mut r in reactors() {
        let b = r.backend();
        let efd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC).unwrap();
        let efd: Rc<OwnedFd> = Rc::new(efd.into());
        // Bytes already in the buffer stay; the read appends after them.
        let mut buf = Vec::with_capacity(16);
        buf.extend_from_slice(b"xy");
        r.submit(
            5,
            Op::Read {
                fd: efd.clone(),
                buf,
            },
        );

        let mut out = Vec::new();
        r.wait(&mut out, Some(Duration::from_millis(30))).unwrap();
        assert!(out.is_empty(), "{b}: eventfd read before any write");

        nix::unistd::write(efd.as_fd(), &3u64.to_ne_bytes()).unwrap();
        let c = one(&mut r);
        assert_eq!(c.result.unwrap(), 8, "{b}");
        let buf = c.buf.unwrap();
        assert_eq!(&buf[..2], b"xy", "{b}");
        assert_eq!(u64::from_ne_bytes(buf[2..10].try_into().unwrap()), 3, "{b}");
    }
}

#[test]
fn pidfd_becomes_readable_when_the_child_exits() {
    for mut r in reactors() {
        let b = r.backend();
        let mut child = Command::new("sleep").arg("0.05").spawn().unwrap();
        let pidfd = Rc::new(crate::sys::uring::pidfd_open(child.id()).unwrap());
        let started = Instant::now();
        r.submit(9, Op::PollReadable { fd: pidfd });
        let c = one(&mut r);
        assert_eq!((c.token, c.result.unwrap()), (9, 0), "{b}");
        assert!(
            started.elapsed() >= Duration::from_millis(30),
            "{b}: too early"
        );
        assert!(
            child.try_wait().unwrap().is_some(),
            "{b}: child still running"
        );
    }
}

#[test]
fn timeout_fires_and_wait_times_out() {
    for mut r in reactors() {
        let b = r.backend();
        // With nothing in flight, wait returns empty when the timeout ends
        // (or earlier on EINTR, which io_uring task work in this test
        // process can cause: hence the loop).
        let mut out = Vec::new();
        let started = Instant::now();
        let mut waits = 0;
        while let Some(left) = Duration::from_millis(20).checked_sub(started.elapsed()) {
            r.wait(&mut out, Some(left)).unwrap();
            waits += 1;
        }
        assert!(out.is_empty(), "{b}");
        assert!(waits < 5, "{b}: wait keeps returning early");

        let started = Instant::now();
        r.submit(
            1,
            Op::Timeout {
                after: Duration::from_millis(40),
            },
        );
        r.submit(
            2,
            Op::Timeout {
                after: Duration::from_millis(10),
            },
        );
        // In firing order, whether they arrive in one wait or two.
        let fired: Vec<_> = collect(&mut r, 2)
            .into_iter()
            .map(|c| (c.token, c.result.unwrap()))
            .collect();
        assert_eq!(fired, [(2, 0), (1, 0)], "{b}");
        assert!(started.elapsed() >= Duration::from_millis(40), "{b}");

        // A cancelled timer completes with ECANCELED, and its token can be
        // reused for a timer that then fires on its own schedule.
        r.submit(
            3,
            Op::Timeout {
                after: Duration::from_secs(60),
            },
        );
        r.cancel(3);
        let c = one(&mut r);
        assert_eq!((c.token, errno(&c)), (3, Some(libc::ECANCELED)), "{b}");
        r.submit(
            3,
            Op::Timeout {
                after: Duration::from_millis(5),
            },
        );
        let c = one(&mut r);
        assert_eq!((c.token, c.result.unwrap()), (3, 0), "{b}");
        assert_eq!(r.in_flight(), 0, "{b}");
    }
}

#[test]
fn cancel_pending_read_hands_the_buffer_back() {
    for mut r in reactors() {
        let b = r.backend();
        let (a, z) = pair();
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(b"ab");
        r.submit(4, Op::Read { fd: z.clone(), buf });
        let mut out = Vec::new();
        r.wait(&mut out, Some(Duration::from_millis(10))).unwrap();
        assert!(out.is_empty(), "{b}");

        r.cancel(4);
        r.cancel(999); // unknown tokens are ignored
        let c = one(&mut r);
        assert_eq!((c.token, errno(&c)), (4, Some(libc::ECANCELED)), "{b}");
        let buf = c.buf.expect("buffer handed back");
        assert_eq!(buf, b"ab", "{b}");
        assert_eq!(buf.capacity(), 64, "{b}");

        // The fd still works after the cancel (epoll: re-registered).
        r.submit(4, Op::Read { fd: z.clone(), buf });
        nix::unistd::write(a.as_fd(), b"cd").unwrap();
        let c = one(&mut r);
        assert_eq!(c.result.unwrap(), 2, "{b}");
        assert_eq!(c.buf.unwrap(), b"abcd", "{b}");
        assert_eq!(r.in_flight(), 0, "{b}");
    }
}

#[test]
fn many_concurrent_ops_keep_their_tokens() {
    const PAIRS: u64 = 150;
    const TIMERS: u64 = 300; // with the reads, more than the 256-entry SQ
    for mut r in reactors() {
        let b = r.backend();
        let pairs: Vec<_> = (0..PAIRS).map(|_| pair()).collect();
        for (i, (_, z)) in pairs.iter().enumerate() {
            let buf = Vec::with_capacity(32);
            r.submit(i as u64, Op::Read { fd: z.clone(), buf });
        }
        for t in 0..TIMERS {
            let after = Duration::from_millis(1 + t % 7);
            r.submit(10_000 + t, Op::Timeout { after });
        }
        for (i, (a, _)) in pairs.iter().enumerate() {
            nix::unistd::write(a.as_fd(), format!("pair {i}").as_bytes()).unwrap();
        }
        let done = collect(&mut r, (PAIRS + TIMERS) as usize);
        let by_token: HashMap<Token, Completion> = done.into_iter().map(|c| (c.token, c)).collect();
        assert_eq!(
            by_token.len(),
            (PAIRS + TIMERS) as usize,
            "{b}: duplicate tokens"
        );
        for i in 0..PAIRS {
            let c = &by_token[&i];
            let want = format!("pair {i}");
            assert_eq!(c.buf.as_deref(), Some(want.as_bytes()), "{b}: token {i}");
        }
        for t in 0..TIMERS {
            assert_eq!(by_token[&(10_000 + t)].result.as_ref().unwrap(), &0, "{b}");
        }
        assert_eq!(r.in_flight(), 0, "{b}");
    }
}

#[test]
fn errors_come_back_as_completions() {
    for mut r in reactors() {
        let b = r.backend();
        let (a, _z) = pair();
        // Offset past the end of the buffer.
        r.submit(
            1,
            Op::Write {
                fd: a.clone(),
                buf: b"abc".to_vec(),
                offset: 4,
            },
        );
        let c = one(&mut r);
        assert_eq!(
            c.result.unwrap_err().kind(),
            io::ErrorKind::InvalidInput,
            "{b}"
        );
        assert_eq!(c.buf.unwrap(), b"abc", "{b}");

        // Accept on a socket that is not listening.
        r.submit(2, Op::Accept { fd: a.clone() });
        let c = one(&mut r);
        assert_eq!(errno(&c), Some(libc::EINVAL), "{b}");
    }
}

fn nonblocking(fd: &OwnedFd) -> bool {
    OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).unwrap()).contains(OFlag::O_NONBLOCK)
}

#[test]
fn blocking_fds_stay_blocking_and_pipes_and_files_work() {
    for mut r in reactors() {
        let b = r.backend();
        // A blocking eventfd (a doorbell a sandbox may share) keeps its
        // flags, and the reactor still never blocks on it.
        let efd: Rc<OwnedFd> = Rc::new(EventFd::from_flags(EfdFlags::EFD_CLOEXEC).unwrap().into());
        r.submit(
            1,
            Op::Read {
                fd: efd.clone(),
                buf: Vec::with_capacity(8),
            },
        );
        let mut out = Vec::new();
        r.wait(&mut out, Some(Duration::from_millis(10))).unwrap();
        assert!(out.is_empty(), "{b}");
        nix::unistd::write(efd.as_fd(), &1u64.to_ne_bytes()).unwrap();
        assert_eq!(one(&mut r).result.unwrap(), 8, "{b}");
        assert!(
            !nonblocking(&efd),
            "{b}: O_NONBLOCK set on a shared eventfd"
        );

        // A pipe.
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let (rx, tx) = (Rc::new(rx), Rc::new(tx));
        r.submit(
            2,
            Op::Read {
                fd: rx.clone(),
                buf: Vec::with_capacity(8),
            },
        );
        r.submit(
            3,
            Op::Write {
                fd: tx.clone(),
                buf: b"pipe".to_vec(),
                offset: 0,
            },
        );
        let mut done = collect(&mut r, 2);
        done.sort_by_key(|c| c.token);
        assert_eq!(done[0].buf.as_deref(), Some(&b"pipe"[..]), "{b}");
        assert_eq!(done[1].result.as_ref().unwrap(), &4, "{b}");

        // A regular file, read at its current position like read(2).
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"file data").unwrap();
        std::io::Seek::rewind(&mut file).unwrap();
        let file: Rc<OwnedFd> = Rc::new(file.into());
        r.submit(
            4,
            Op::Read {
                fd: file.clone(),
                buf: Vec::with_capacity(4),
            },
        );
        assert_eq!(one(&mut r).buf.unwrap(), b"file", "{b}");
        r.submit(
            5,
            Op::Read {
                fd: file.clone(),
                buf: Vec::with_capacity(64),
            },
        );
        assert_eq!(one(&mut r).buf.unwrap(), b" data", "{b}");
        assert_eq!(r.in_flight(), 0, "{b}");
    }
}
