//! One connection to the daemon, shared by every thread that calls on it.
//!
//! There is no reader thread: a caller waiting for its response reads the
//! socket itself while nobody else does (it is the *reader*), and hands
//! each response it decodes to the caller it belongs to. The others park
//! until the reader hands them theirs, or hands them the reading. A lone
//! caller thus gets its response straight from its own `read`, without a
//! wake-up of another thread in between.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::{self, Thread};

use nix::errno::Errno;
use nix::sys::socket::{send, MsgFlags};

use super::error::{ClientError, ProtocolError};
use crate::protocol::{
    decode_response, encode_request, max_body_for, FrameDecoder, Request, Response,
};

type Reply = Result<Response, ClientError>;

/// A caller waiting for its response.
struct Waiter {
    thread: Thread,
    reply: Option<Reply>,
}

/// What the callers share, under one lock.
#[derive(Default)]
struct Waiters {
    by_id: HashMap<u64, Waiter>,
    /// A caller is reading the socket for everyone.
    reading: bool,
    /// The stream ended or broke: nobody may wait any more.
    closed: bool,
}

impl Waiters {
    /// The reading is free and someone still waits for a response: wake
    /// one of them to take it over.
    fn pass_reading(&self) {
        if self.reading {
            return;
        }
        if let Some(next) = self.by_id.values().find(|w| w.reply.is_none()) {
            next.thread.unpark();
        }
    }

    fn deliver(&mut self, id: u64, reply: Reply) {
        match (self.by_id.get_mut(&id), reply) {
            (Some(waiter), reply) => {
                waiter.reply = Some(reply);
                waiter.thread.unpark();
            }
            (None, Ok(Response::Error(body))) => {
                tracing::warn!(request_id = id, %body, "daemon reported a connection error");
            }
            (None, _) => {
                tracing::warn!(request_id = id, "response to no request in flight");
            }
        }
    }

    /// Fail everyone still waiting.
    fn close(&mut self) {
        self.closed = true;
        for waiter in self.by_id.values_mut().filter(|w| w.reply.is_none()) {
            waiter.reply = Some(Err(ClientError::Disconnected));
            waiter.thread.unpark();
        }
    }
}

/// The reading half, used by one caller at a time.
struct ReadSide {
    stream: UnixStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

/// What one turn of reading produced.
struct Batch {
    replies: Vec<(u64, Reply)>,
    /// The stream ended or cannot be trusted any more.
    closed: bool,
}

impl ReadSide {
    /// Read until at least one response is complete, or the stream ends.
    fn read_batch(&mut self) -> Batch {
        let mut replies = Vec::new();
        while replies.is_empty() {
            let n = match self.stream.read(&mut self.buf) {
                Ok(0) => return self.ended(replies),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    tracing::debug!(?err, "daemon connection read failed");
                    return self.ended(replies);
                }
            };
            self.decoder.feed(&self.buf[..n]);
            while let Some(next) = self.decoder.next_frame() {
                replies.push(match next {
                    Ok(frame) => (
                        frame.request_id,
                        decode_response(&frame)
                            .map_err(|e| ClientError::Protocol(ProtocolError::Decode(e))),
                    ),
                    Err(err) if err.is_fatal() => {
                        tracing::warn!(%err, "daemon sent a broken stream; closing");
                        let _ = self.stream.shutdown(std::net::Shutdown::Both);
                        return Batch {
                            replies,
                            closed: true,
                        };
                    }
                    Err(err) => (
                        err.request_id().unwrap_or(0),
                        Err(ClientError::Protocol(ProtocolError::Frame(err))),
                    ),
                });
            }
        }
        Batch {
            replies,
            closed: false,
        }
    }

    fn ended(&mut self, replies: Vec<(u64, Reply)>) -> Batch {
        if let Err(err) = self.decoder.finish() {
            tracing::debug!(%err, "daemon connection ended mid-frame");
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        Batch {
            replies,
            closed: true,
        }
    }
}

pub(super) struct Connection {
    writer: Mutex<UnixStream>,
    waiters: Mutex<Waiters>,
    reader: Mutex<ReadSide>,
    next_id: AtomicU64,
}

impl Connection {
    pub(super) fn open(path: &Path, max_payload: usize) -> Result<Connection, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
        let read_half = stream.try_clone().map_err(ClientError::Io)?;
        Ok(Connection {
            writer: Mutex::new(stream),
            waiters: Mutex::new(Waiters::default()),
            reader: Mutex::new(ReadSide {
                stream: read_half,
                decoder: FrameDecoder::new(max_body_for(max_payload)),
                buf: vec![0u8; 64 * 1024],
            }),
            next_id: AtomicU64::new(1),
        })
    }

    /// Send `req` and wait for its response.
    pub(super) fn call(&self, req: &Request) -> Reply {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::new();
        encode_request(id, req, &mut frame);
        {
            let mut waiters = lock(&self.waiters);
            if waiters.closed {
                return Err(ClientError::Disconnected);
            }
            let thread = thread::current();
            waiters.by_id.insert(
                id,
                Waiter {
                    thread,
                    reply: None,
                },
            );
        }
        let sent = {
            let writer = lock(&self.writer);
            let sent = send_all(&writer, &frame);
            if sent.is_err() {
                // A frame may be half written: the stream is unusable.
                // Shutting it down ends the reading, which fails every
                // waiter.
                let _ = writer.shutdown(std::net::Shutdown::Both);
            }
            sent
        };
        if let Err(err) = sent {
            let mut waiters = lock(&self.waiters);
            waiters.by_id.remove(&id);
            waiters.pass_reading();
            return Err(match err.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                    ClientError::Disconnected
                }
                _ => ClientError::Io(err),
            });
        }
        self.wait(id)
    }

    /// Wait for the response to `id`: take it once it was handed over,
    /// read the socket while nobody else does, park otherwise.
    fn wait(&self, id: u64) -> Reply {
        loop {
            let mut waiters = lock(&self.waiters);
            let reply = waiters.by_id.get_mut(&id).and_then(|w| w.reply.take());
            if let Some(reply) = reply {
                waiters.by_id.remove(&id);
                waiters.pass_reading();
                return reply;
            }
            if waiters.reading {
                drop(waiters);
                // Woken with a response, with the reading to take over, or
                // spuriously: look again.
                thread::park();
                continue;
            }
            waiters.reading = true;
            drop(waiters);
            let batch = lock(&self.reader).read_batch();
            let mut waiters = lock(&self.waiters);
            waiters.reading = false;
            for (reply_id, reply) in batch.replies {
                waiters.deliver(reply_id, reply);
            }
            if batch.closed {
                waiters.close();
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = lock(&self.writer).shutdown(std::net::Shutdown::Both);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking holder cannot leave these half-updated.
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
