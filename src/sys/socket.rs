//! Unix-socket plumbing for the sandbox control channel: a `SOCK_SEQPACKET`
//! pair and non-blocking messages on it.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
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

/// Send one message, never blocking (`MSG_DONTWAIT`) and never raising
/// SIGPIPE (`MSG_NOSIGNAL`). (Messages carrying a descriptor are the
/// assignment's: see `ring::send_assignment`.)
pub fn send_nonblocking(sock: BorrowedFd<'_>, data: &[u8]) -> io::Result<()> {
    let sent = nix::sys::socket::send(
        sock.as_raw_fd(),
        data,
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
    )?;
    if sent != data.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short seqpacket send",
        ));
    }
    Ok(())
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
    fn messages_keep_their_boundaries_and_carried_fds_are_closed() {
        let (a, b) = seqpacket_pair().unwrap();
        send_nonblocking(a.as_fd(), b"hello").unwrap();
        send_nonblocking(a.as_fd(), b"bare").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(recv_nonblocking(b.as_fd(), &mut buf).unwrap(), Some(5));
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(recv_nonblocking(b.as_fd(), &mut buf).unwrap(), Some(4));
        assert_eq!(recv_nonblocking(b.as_fd(), &mut buf).unwrap(), None);
    }

    #[test]
    fn send_does_not_block_when_full() {
        let (a, _b) = seqpacket_pair().unwrap();
        let big = vec![0u8; 32 * 1024];
        let mut last = Ok(());
        for _ in 0..1000 {
            last = send_nonblocking(a.as_fd(), &big);
            if last.is_err() {
                break;
            }
        }
        assert_eq!(last.unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }
}
