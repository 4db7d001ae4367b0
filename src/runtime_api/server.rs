//! The bridge's loop: one thread, one `mio` poll over the listener, the
//! connections, the ring's request doorbell and the bootstrap's pidfd.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd};

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::http::{Answer, Event, Head, Limits, Method, Reader, Request, CONTINUE};
use super::lambda::{self, Function};
use super::state::{ConnId, Machine, Next};
use super::BridgeError;
use crate::ring::RuntimeRing;
use crate::sys::process::{pidfd_wait, ExitStatus};

/// Most connections open at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// Most headers (or trailers) in one request.
pub const MAX_HEADERS: usize = 64;
/// Largest request head: Go's `http.DefaultMaxHeaderBytes` (1 MiB) plus
/// its 4 KiB of slack, what Lambda's own Runtime API server takes.
/// awslambdaric relies on it: it sends the X-Ray error cause (a stack
/// trace of up to 1 MiB) as a header on `/error`.
pub const MAX_HEAD: usize = (1 << 20) + 4096;

const LISTENER: Token = Token(0);
const RING: Token = Token(1);
const CHILD: Token = Token(2);
const FIRST_CONN: usize = 3;

/// Bytes read from a socket at once.
const READ_CHUNK: usize = 64 * 1024;
/// Runtime API path prefix.
const PREFIX: &str = "/2018-06-01/runtime/";

/// Serve the Runtime API on `listener` until the bootstrap whose pidfd is
/// `child` exits; returns how it ended. Errors are the bridge's own
/// failures (poll, ring, a daemon breaking the ring contract).
pub fn serve(
    listener: std::net::TcpListener,
    ring: RuntimeRing,
    child: BorrowedFd<'_>,
    function: Function,
) -> Result<ExitStatus, BridgeError> {
    listener.set_nonblocking(true).map_err(BridgeError::Poll)?;
    let mut listener = TcpListener::from_std(listener);
    let poll = Poll::new().map_err(BridgeError::Poll)?;
    let registry = poll.registry();
    registry
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(BridgeError::Poll)?;
    let bell = ring.request_bell().as_raw_fd();
    registry
        .register(&mut SourceFd(&bell), RING, Interest::READABLE)
        .map_err(BridgeError::Poll)?;
    let pidfd = child.as_raw_fd();
    registry
        .register(&mut SourceFd(&pidfd), CHILD, Interest::READABLE)
        .map_err(BridgeError::Poll)?;
    let max_body = ring.max_body();
    let mut server = Server {
        poll,
        listener,
        ring,
        function,
        machine: Machine::new(),
        conns: HashMap::new(),
        next_conn: FIRST_CONN,
        limits: Limits {
            max_head: MAX_HEAD,
            max_headers: MAX_HEADERS,
            max_body,
        },
        scratch: vec![0; READ_CHUNK],
    };
    let mut events = Events::with_capacity(128);
    server.take_invocations()?;
    loop {
        match server.poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(BridgeError::Poll(e)),
        }
        let mut child_done = false;
        for event in &events {
            match event.token() {
                LISTENER => server.accept(),
                RING => server.ring_rang()?,
                // Last: what the bootstrap posted before it exited counts.
                CHILD => child_done = true,
                Token(conn) => server.service(conn)?,
            }
        }
        if child_done {
            if let Some(status) = pidfd_wait(child, true).map_err(BridgeError::Wait)? {
                return Ok(status);
            }
        }
    }
}

struct Conn {
    stream: TcpStream,
    reader: Reader,
    /// Answer bytes not written yet (the socket was full).
    out: Vec<u8>,
    /// Close once `out` is written.
    close_after: bool,
    /// A `/next` of this connection waits for an invocation.
    waiting: bool,
    /// After a refusal that closes: bytes still to read and drop (so the
    /// client reads the answer rather than a reset), then close.
    discard: Option<usize>,
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    ring: RuntimeRing,
    function: Function,
    machine: Machine,
    conns: HashMap<ConnId, Conn>,
    next_conn: usize,
    limits: Limits,
    scratch: Vec<u8>,
}

impl Server {
    fn accept(&mut self) {
        while self.conns.len() < MAX_CONNECTIONS {
            let (mut stream, _) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // ECONNABORTED, EMFILE...: the next readiness retries.
                Err(_) => return,
            };
            // Answers go out in one write; never wait for an ACK first.
            let _ = stream.set_nodelay(true);
            let id = self.next_conn;
            self.next_conn += 1;
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self
                .poll
                .registry()
                .register(&mut stream, Token(id), interest)
                .is_err()
            {
                continue;
            }
            let conn = Conn {
                stream,
                reader: Reader::new(self.limits),
                out: Vec::new(),
                close_after: false,
                waiting: false,
                discard: None,
            };
            self.conns.insert(id, conn);
        }
    }

    /// The request doorbell rang: reset it (poll said it is readable and
    /// this loop is its only reader, so the read of the blocking eventfd
    /// returns at once), then take every INVOKE on the ring.
    fn ring_rang(&mut self) -> Result<(), BridgeError> {
        let mut count = [0u8; 8];
        let _ = nix::unistd::read(self.ring.request_bell(), &mut count);
        self.take_invocations()
    }

    fn take_invocations(&mut self) -> Result<(), BridgeError> {
        while let Some(invoke) = self.ring.try_next_invoke().map_err(BridgeError::Ring)? {
            if let Some((conn, invoke)) = self.machine.invoke(invoke)? {
                let answer = lambda::next_answer(&self.function, invoke);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.waiting = false;
                }
                self.answer(conn, &answer, false);
                // It may hold its next request already, buffered or still
                // in the socket (not read while it waited).
                self.service(conn)?;
            }
        }
        Ok(())
    }

    /// Read what `id` sent, handle its requests in order, write what is
    /// pending.
    fn service(&mut self, id: ConnId) -> Result<(), BridgeError> {
        self.flush(id);
        let mut eof = false;
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return Ok(());
            };
            // A connection whose answer is pending (a waiting /next, a
            // full socket) is not read past one head's worth.
            let blocked = conn.waiting || !conn.out.is_empty();
            if blocked && conn.reader.buffered() > self.limits.max_head {
                break;
            }
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => match conn.discard.as_mut() {
                    Some(left) if *left > n => *left -= n,
                    Some(_) => {
                        self.close(id);
                        return Ok(());
                    }
                    None => {
                        conn.reader.feed(&self.scratch[..n]);
                        self.process(id)?;
                    }
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        self.process(id)?;
        if eof {
            self.close(id);
        }
        Ok(())
    }

    /// Handle buffered requests of `id` while it is free to answer.
    fn process(&mut self, id: ConnId) -> Result<(), BridgeError> {
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return Ok(());
            };
            if conn.waiting || !conn.out.is_empty() || conn.close_after || conn.discard.is_some() {
                return Ok(());
            }
            match conn.reader.next() {
                Ok(None) => return Ok(()),
                Ok(Some(Event::Continue)) => self.write(id, CONTINUE.to_vec(), false),
                Ok(Some(Event::Request(request))) => {
                    if let Some((answer, close)) = self.request(id, request)? {
                        self.answer(id, &answer, close);
                    }
                }
                Ok(Some(Event::TooLarge(head))) => self.too_large(id, &head)?,
                Err(e) => {
                    let answer = Answer::error(400, "InvalidRequest", &e.to_string());
                    self.refuse(id, &answer);
                }
            }
        }
    }

    /// Handle one request: the answer (and whether to close after it), or
    /// `None` when a `/next` waits for an invocation.
    fn request(
        &mut self,
        id: ConnId,
        request: Request,
    ) -> Result<Option<(Answer, bool)>, BridgeError> {
        let Request {
            head,
            body,
            trailers,
        } = request;
        let keep = head.keep_alive;
        let max = self.limits.max_body;
        let Some(route) = route(&head.path) else {
            let answer = Answer::error(404, "NotFound", "no such Runtime API path");
            return Ok(Some((answer, !keep)));
        };
        let expected = if route == Route::Next {
            Method::Get
        } else {
            Method::Post
        };
        if head.method != expected {
            let answer = Answer::error(405, "MethodNotAllowed", "method not allowed here");
            return Ok(Some((answer, !keep)));
        }
        let answer = match route {
            Route::Next => match self.machine.next(id) {
                Next::Accept { init_ok, invoke } => {
                    if init_ok {
                        self.ring.send_init_ok().map_err(BridgeError::Ring)?;
                    }
                    match invoke {
                        Some(invoke) => lambda::next_answer(&self.function, invoke),
                        None => {
                            if let Some(conn) = self.conns.get_mut(&id) {
                                conn.waiting = true;
                                // Keep-alive is decided when it is answered.
                                conn.close_after = !keep;
                            }
                            return Ok(None);
                        }
                    }
                }
                Next::Refuse(answer) => answer,
            },
            Route::InitError => match self.machine.init_error() {
                Ok(()) => {
                    let error_type = head.header("lambda-runtime-function-error-type");
                    let error = lambda::error_body(&body, error_type, max);
                    self.ring
                        .send_init_error(&error)
                        .map_err(BridgeError::Ring)?;
                    Answer::accepted()
                }
                Err(answer) => answer,
            },
            Route::Response(request_id) => {
                let mode = head.header("lambda-runtime-function-response-mode");
                if mode.is_some_and(|m| !m.eq_ignore_ascii_case("streaming")) {
                    Answer::error(
                        400,
                        "InvalidFunctionResponseMode",
                        "Invalid function response mode",
                    )
                } else {
                    match self.machine.answer(request_id) {
                        Ok(invocation) => {
                            match lambda::streamed_error(&trailers, max) {
                                Some(error) => self.ring.send_error(invocation, &error),
                                None => self.ring.send_result(invocation, &body),
                            }
                            .map_err(BridgeError::Ring)?;
                            Answer::accepted()
                        }
                        Err(answer) => answer,
                    }
                }
            }
            Route::Error(request_id) => match self.machine.answer(request_id) {
                Ok(invocation) => {
                    let error_type = head.header("lambda-runtime-function-error-type");
                    let error = lambda::error_body(&body, error_type, max);
                    self.ring
                        .send_error(invocation, &error)
                        .map_err(BridgeError::Ring)?;
                    Answer::accepted()
                }
                Err(answer) => answer,
            },
        };
        Ok(Some((answer, !keep)))
    }

    /// A body over the ring's limit: the invocation it answers (or the
    /// init it fails) ends with Lambda's `Function.ResponseSizeTooLarge`,
    /// as Lambda ends it; the runtime gets 413 and the connection closes
    /// (the body is not read).
    fn too_large(&mut self, id: ConnId, head: &Head) -> Result<(), BridgeError> {
        let max = self.limits.max_body;
        let refused = match (head.method, route(&head.path)) {
            (Method::Post, Some(Route::Response(request_id) | Route::Error(request_id))) => {
                match self.machine.answer(request_id) {
                    Ok(invocation) => {
                        let error = lambda::too_large_body(max);
                        self.ring
                            .send_error(invocation, &error)
                            .map_err(BridgeError::Ring)?;
                        None
                    }
                    Err(answer) => Some(answer),
                }
            }
            (Method::Post, Some(Route::InitError)) => match self.machine.init_error() {
                Ok(()) => {
                    let error = lambda::too_large_body(max);
                    self.ring
                        .send_init_error(&error)
                        .map_err(BridgeError::Ring)?;
                    None
                }
                Err(answer) => Some(answer),
            },
            _ => None,
        };
        let answer = refused.unwrap_or_else(|| lambda::too_large_answer(max));
        self.refuse(id, &answer);
        Ok(())
    }

    /// Answer and close: what the client still sends is read and dropped
    /// (up to a body's worth) so it sees the answer, not a reset.
    fn refuse(&mut self, id: ConnId, answer: &Answer) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.discard = Some(self.limits.max_body + self.limits.max_head);
        }
        self.write(id, answer.encode(true), true);
    }

    /// Send `answer` in one write (`close`: then close the connection).
    fn answer(&mut self, id: ConnId, answer: &Answer, close: bool) {
        let close = close || self.conns.get(&id).is_some_and(|c| c.close_after);
        self.write(id, answer.encode(close), close);
    }

    /// Queue `bytes` for `id` and write what the socket takes now.
    fn write(&mut self, id: ConnId, bytes: Vec<u8>, close: bool) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.out.is_empty() {
            conn.out = bytes;
        } else {
            conn.out.extend_from_slice(&bytes);
        }
        conn.close_after |= close;
        self.flush(id);
    }

    /// Write pending bytes of `id`; once all are out, close it if asked.
    fn flush(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        while !conn.out.is_empty() {
            match conn.stream.write(&conn.out) {
                Ok(0) => return self.close(id),
                Ok(n) => {
                    conn.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.close(id),
            }
        }
        if conn.close_after && !conn.waiting {
            let _ = conn.stream.shutdown(Shutdown::Write);
            if conn.discard.is_none() {
                self.close(id);
            }
        }
    }

    fn close(&mut self, id: ConnId) {
        if let Some(mut conn) = self.conns.remove(&id) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.machine.closed(id);
        }
        // Room for a connection left waiting in the backlog.
        self.accept();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Next,
    InitError,
    Response(&'a str),
    Error(&'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix(PREFIX)?;
    match rest {
        "invocation/next" => return Some(Route::Next),
        "init/error" => return Some(Route::InitError),
        _ => {}
    }
    let rest = rest.strip_prefix("invocation/")?;
    let (id, what) = rest.split_once('/')?;
    match what {
        "response" => Some(Route::Response(id)),
        "error" => Some(Route::Error(id)),
        _ => None,
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
