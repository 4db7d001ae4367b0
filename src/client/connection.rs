//! One connection to the daemon: a writer lock, and a reader thread that
//! hands each response to the caller waiting on its request id.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use nix::errno::Errno;
use nix::sys::socket::{send, MsgFlags};

use super::error::{ClientError, ProtocolError};
use crate::protocol::{
    decode_response, encode_request, max_body_for, FrameDecoder, Request, Response,
};

type Reply = Result<Response, ClientError>;

/// Callers waiting for their response, by request id.
#[derive(Default)]
struct Waiters {
    by_id: HashMap<u64, SyncSender<Reply>>,
    /// Set by the reader thread when it stops: nobody may wait any more.
    closed: bool,
}

pub(super) struct Connection {
    writer: Mutex<UnixStream>,
    waiters: Arc<Mutex<Waiters>>,
    next_id: AtomicU64,
    reader: Option<JoinHandle<()>>,
}

impl Connection {
    pub(super) fn open(path: &Path, max_payload: usize) -> Result<Connection, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
        let read_half = stream.try_clone().map_err(ClientError::Io)?;
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let reader = std::thread::Builder::new()
            .name("sprout-client-rx".into())
            .spawn({
                let waiters = Arc::clone(&waiters);
                move || read_responses(read_half, max_body_for(max_payload), &waiters)
            })
            .map_err(ClientError::Io)?;
        Ok(Connection {
            writer: Mutex::new(stream),
            waiters,
            next_id: AtomicU64::new(1),
            reader: Some(reader),
        })
    }

    /// Send `req` and wait for its response.
    pub(super) fn call(&self, req: &Request) -> Reply {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::new();
        encode_request(id, req, &mut frame);
        let (tx, rx) = sync_channel(1);
        {
            let mut waiters = lock(&self.waiters);
            if waiters.closed {
                return Err(ClientError::Disconnected);
            }
            waiters.by_id.insert(id, tx);
        }
        let sent = {
            let writer = lock(&self.writer);
            let sent = send_all(&writer, &frame);
            if sent.is_err() {
                // A frame may be half written: the stream is unusable.
                // Shutting it down makes the reader fail every waiter.
                let _ = writer.shutdown(std::net::Shutdown::Both);
            }
            sent
        };
        if let Err(err) = sent {
            lock(&self.waiters).by_id.remove(&id);
            return Err(match err.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                    ClientError::Disconnected
                }
                _ => ClientError::Io(err),
            });
        }
        rx.recv().unwrap_or(Err(ClientError::Disconnected))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = lock(&self.writer).shutdown(std::net::Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking holder cannot leave these maps half-updated.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Write all of `bytes`, without SIGPIPE when the daemon is gone.
fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match send(stream.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(io::Error::from(errno)),
        }
    }
    Ok(())
}

/// The reader thread: route every response to its waiter until the stream
/// ends or breaks, then fail everyone still waiting.
fn read_responses(mut stream: UnixStream, max_body: usize, waiters: &Mutex<Waiters>) {
    let mut decoder = FrameDecoder::new(max_body);
    let mut buf = vec![0u8; 64 * 1024];
    'read: loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                tracing::debug!(?err, "daemon connection read failed");
                break;
            }
        };
        decoder.feed(&buf[..n]);
        while let Some(next) = decoder.next_frame() {
            let (id, reply) = match next {
                Ok(frame) => (
                    frame.request_id,
                    decode_response(&frame)
                        .map_err(|e| ClientError::Protocol(ProtocolError::Decode(e))),
                ),
                Err(err) if err.is_fatal() => {
                    tracing::warn!(%err, "daemon sent a broken stream; closing");
                    break 'read;
                }
                Err(err) => (
                    err.request_id().unwrap_or(0),
                    Err(ClientError::Protocol(ProtocolError::Frame(err))),
                ),
            };
            let waiter = lock(waiters).by_id.remove(&id);
            match (waiter, reply) {
                (Some(tx), reply) => {
                    let _ = tx.send(reply);
                }
                (None, Ok(Response::Error(body))) => {
                    tracing::warn!(request_id = id, %body, "daemon reported a connection error");
                }
                (None, _) => {
                    tracing::warn!(request_id = id, "response to no request in flight");
                }
            }
        }
    }
    if let Err(err) = decoder.finish() {
        tracing::debug!(%err, "daemon connection ended mid-frame");
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let mut waiters = lock(waiters);
    waiters.closed = true;
    for (_, tx) in waiters.by_id.drain() {
        let _ = tx.send(Err(ClientError::Disconnected));
    }
}
