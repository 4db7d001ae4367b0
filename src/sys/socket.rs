//! Unix-socket plumbing for the sandbox control channel: a `SOCK_SEQPACKET`
//! pair, and one message carrying one descriptor (`SCM_RIGHTS`).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

/// A connected close-on-exec `SOCK_SEQPACKET` pair.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// Send one message with an optional descriptor, never blocking
/// (`MSG_DONTWAIT`) and never raising SIGPIPE (`MSG_NOSIGNAL`).
pub fn send_with_fd(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let iov = [IoSlice::new(data)];
    let fds: [RawFd; 1] = [fd.map_or(-1, |fd| fd.as_raw_fd())];
    let cmsgs = [ControlMessage::ScmRights(&fds)];
    let cmsgs: &[ControlMessage<'_>] = if fd.is_some() { &cmsgs } else { &[] };
    let sent = sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        cmsgs,
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    if sent != data.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short seqpacket send",
        ));
    }
    Ok(())
}

/// Receive one message (blocking) into `buf`; returns its length and the
/// descriptor it carried, if any (received close-on-exec). Extra
/// descriptors are closed; a truncated message is an error.
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut received: Vec<OwnedFd> = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: SCM_RIGHTS installed these descriptors in our
                // table for this message; nobody else knows them.
                received.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    let truncated = msg
        .flags
        .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
    let len = msg.bytes;
    if truncated {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "control message truncated",
        ));
    }
    let first = received.into_iter().next();
    Ok((len, first))
}

/// Receive one message without blocking; `Ok(None)` when none is queued.
/// Any descriptors it carried are closed.
pub fn recv_nonblocking(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    match recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    ) {
        Ok(msg) => {
            for cmsg in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    for fd in fds {
                        // SAFETY: SCM_RIGHTS installed this descriptor for
                        // us; we own it and close it at once.
                        drop(unsafe { OwnedFd::from_raw_fd(fd) });
                    }
                }
            }
            Ok(Some(msg.bytes))
        }
        Err(nix::errno::Errno::EAGAIN) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn one_message_carries_one_descriptor() {
        let (a, b) = seqpacket_pair().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        send_with_fd(a.as_fd(), b"hello", Some(file.as_fd())).unwrap();
        send_with_fd(a.as_fd(), b"bare", None).unwrap();
        let mut buf = [0u8; 64];
        let (n, fd) = recv_with_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        let fd = fd.expect("descriptor");
        let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(target, std::path::Path::new("/dev/null"));
        let (n, fd) = recv_with_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"bare");
        assert!(fd.is_none());
    }

    #[test]
    fn truncated_message_is_an_error() {
        let (a, b) = seqpacket_pair().unwrap();
        send_with_fd(a.as_fd(), &[7u8; 100], None).unwrap();
        let mut buf = [0u8; 10];
        assert!(recv_with_fd(b.as_fd(), &mut buf).is_err());
    }

    #[test]
    fn send_does_not_block_when_full() {
        let (a, _b) = seqpacket_pair().unwrap();
        let big = vec![0u8; 32 * 1024];
        let mut last = Ok(());
        for _ in 0..1000 {
            last = send_with_fd(a.as_fd(), &big, None);
            if last.is_err() {
                break;
            }
        }
        assert_eq!(last.unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }
}
