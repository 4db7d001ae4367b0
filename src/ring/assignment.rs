//! The assignment: the one SOCK_SEQPACKET message on a sandbox's control
//! socket (fd 6) that turns a tenant-neutral sandbox into one function's.
//! Its bytes are UTF-8 JSON ([`Assignment`]); its SCM_RIGHTS carries exactly
//! one fd, a directory fd of the function's code.

use std::collections::BTreeMap;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};
use serde::{Deserialize, Serialize};

/// Largest assignment message accepted, in bytes.
pub const MAX_ASSIGNMENT: usize = 65536;

/// Which function a sandbox now serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub function: String,
    pub version: u64,
    /// `module.func` for python; empty for native (the code dir's
    /// `bootstrap` is the handler).
    pub handler: String,
    pub env: BTreeMap<String, String>,
    pub memory_mb: u32,
    pub timeout_ms: u64,
}

impl Assignment {
    /// The environment a runtime started for this assignment gets, as
    /// `KEY=value` strings: `base` (the sandbox's fresh environment), with
    /// the assignment's variables (Lambda's and the function's own, see
    /// `lambda::env`) replacing or added to it, except names using the
    /// reserved `SPROUT_` prefix; then what the function knows about itself
    /// (`SPROUT_FUNCTION`, `SPROUT_FUNCTION_VERSION`, `SPROUT_HANDLER`,
    /// `SPROUT_MEMORY_MB`, `SPROUT_TIMEOUT_MS`).
    pub fn runtime_env(&self, mut base: Vec<String>) -> Vec<String> {
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.starts_with("SPROUT_") {
                continue;
            }
            let entry = format!("{key}={value}");
            match base.iter_mut().find(|e| e.split('=').next() == Some(key)) {
                Some(existing) => *existing = entry,
                None => base.push(entry),
            }
        }
        base.push(format!("SPROUT_FUNCTION={}", self.function));
        base.push(format!("SPROUT_FUNCTION_VERSION={}", self.version));
        base.push(format!("SPROUT_HANDLER={}", self.handler));
        base.push(format!("SPROUT_MEMORY_MB={}", self.memory_mb));
        base.push(format!("SPROUT_TIMEOUT_MS={}", self.timeout_ms));
        base
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AssignmentError {
    #[error("encoding the assignment failed")]
    Encode(#[source] serde_json::Error),
    #[error("the assignment is {len} bytes, over the {MAX_ASSIGNMENT}-byte limit")]
    TooLarge { len: usize },
    #[error("sending the assignment on the control socket failed")]
    Send(#[source] std::io::Error),
    #[error("receiving the assignment on the control socket failed")]
    Recv(#[source] std::io::Error),
    #[error("the control socket closed before an assignment came")]
    Closed,
    #[error("the assignment message was truncated")]
    Truncated,
    #[error("the assignment carried {count} descriptors, expected exactly one (the code dir)")]
    FdCount { count: usize },
    #[error("the assignment is not the expected JSON")]
    Decode(#[source] serde_json::Error),
}

/// Send `assignment` with `code_dir` attached, as one message. Never
/// blocks (the daemon calls it from its event loop) and never raises
/// SIGPIPE.
pub fn send_assignment(
    control: BorrowedFd<'_>,
    assignment: &Assignment,
    code_dir: BorrowedFd<'_>,
) -> Result<(), AssignmentError> {
    let bytes = serde_json::to_vec(assignment).map_err(AssignmentError::Encode)?;
    if bytes.len() > MAX_ASSIGNMENT {
        return Err(AssignmentError::TooLarge { len: bytes.len() });
    }
    let fds = [code_dir.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<UnixAddr>(
        control.as_raw_fd(),
        &[IoSlice::new(&bytes)],
        &cmsg,
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map_err(|e| AssignmentError::Send(e.into()))?;
    Ok(())
}

/// Block for the assignment; returns it with the code dir fd.
pub fn recv_assignment(control: BorrowedFd<'_>) -> Result<(Assignment, OwnedFd), AssignmentError> {
    let mut buf = vec![0u8; MAX_ASSIGNMENT];
    let mut cmsg_buf = nix::cmsg_space!([RawFd; 4]);
    let (len, flags, received) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<UnixAddr>(
            control.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_buf),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut received = Vec::new();
                for cmsg in msg.cmsgs().map_err(|e| AssignmentError::Recv(e.into()))? {
                    if let ControlMessageOwned::ScmRights(fds) = cmsg {
                        received.extend(fds);
                    }
                }
                break (msg.bytes, msg.flags, received);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(AssignmentError::Recv(e.into())),
        }
    };
    // Own every received descriptor first, so extras are closed on any
    // error below.
    let mut owned = Vec::with_capacity(received.len());
    for raw in received {
        owned.push(crate::sys::fd::inherited(raw).map_err(AssignmentError::Recv)?);
    }
    if flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC) {
        return Err(AssignmentError::Truncated);
    }
    if len == 0 && owned.is_empty() {
        return Err(AssignmentError::Closed);
    }
    if owned.len() != 1 {
        return Err(AssignmentError::FdCount { count: owned.len() });
    }
    let assignment = serde_json::from_slice(&buf[..len]).map_err(AssignmentError::Decode)?;
    Ok((assignment, owned.pop().expect("one fd")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    fn sample() -> Assignment {
        Assignment {
            function: "hello".into(),
            version: 3,
            handler: "app.handler".into(),
            env: BTreeMap::from([
                ("K".into(), "V".into()),
                ("SPROUT_FUNCTION".into(), "spoof".into()),
            ]),
            memory_mb: 128,
            timeout_ms: 3000,
        }
    }

    #[test]
    fn assignment_travels_with_its_code_dir() {
        let (a, b) = pair();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("marker"), b"x").unwrap();
        let code = std::fs::File::open(dir.path()).unwrap();
        send_assignment(a.as_fd(), &sample(), code.as_fd()).unwrap();
        let (got, fd) = recv_assignment(b.as_fd()).unwrap();
        assert_eq!(got, sample());
        let path = format!("/proc/self/fd/{}/marker", fd.as_raw_fd());
        assert_eq!(std::fs::read(path).unwrap(), b"x");
    }

    #[test]
    fn message_without_fd_or_after_close_is_an_error() {
        let (a, b) = pair();
        nix::sys::socket::send(a.as_raw_fd(), b"{}", MsgFlags::empty()).unwrap();
        assert!(matches!(
            recv_assignment(b.as_fd()),
            Err(AssignmentError::FdCount { count: 0 })
        ));
        drop(a);
        assert!(matches!(
            recv_assignment(b.as_fd()),
            Err(AssignmentError::Closed)
        ));
    }

    #[test]
    fn runtime_env_overrides_the_base_and_puts_ours_last() {
        let mut assignment = sample();
        assignment.env = [
            ("GREETING", "hi"),
            ("PATH", "/opt/bin:/usr/bin"),
            ("SPROUT_FUNCTION", "other"),
            ("A=B", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let env = assignment.runtime_env(vec!["PATH=/usr/bin:/bin".to_owned()]);
        assert_eq!(env[0], "PATH=/opt/bin:/usr/bin");
        assert!(env.contains(&"GREETING=hi".to_owned()));
        assert!(!env
            .iter()
            .any(|e| e == "SPROUT_FUNCTION=other" || e.starts_with("A=B")));
        let ours = format!("SPROUT_FUNCTION={}", assignment.function);
        assert_eq!(
            env.iter()
                .filter(|e| e.starts_with("SPROUT_FUNCTION="))
                .count(),
            1
        );
        assert!(env.contains(&ours));
        assert!(env.last().unwrap().starts_with("SPROUT_TIMEOUT_MS="));
    }
}
