//! Client connections: accept, read frames, write responses.

use std::os::fd::OwnedFd;
use std::rc::Rc;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use super::tokens::Event;
use super::Daemon;
use crate::protocol::{
    self, ErrorBody, ErrorKind, Frame, FrameDecoder, FrameError, Request, Response,
};
use crate::reactor::{Completion, Op};

/// Bytes asked for per read.
const READ_CHUNK: usize = 64 * 1024;

pub(super) struct Conn {
    fd: Rc<OwnedFd>,
    decoder: FrameDecoder,
    /// Encoded responses not yet handed to the reactor.
    out: Vec<u8>,
    /// The read buffer, kept between reads (the reactor holds it while a
    /// read is in flight).
    read_buf: Vec<u8>,
    reading: bool,
    writing: bool,
    /// Where the write in flight started in its buffer.
    write_offset: usize,
    /// Stop reading; close once everything queued is written.
    closing: bool,
}

impl Daemon {
    pub(super) fn submit_accept(&mut self) {
        self.reactor.submit(
            Event::Accept.token(),
            Op::Accept {
                fd: self.listener.clone(),
            },
        );
    }

    pub(super) fn on_accept(&mut self, completion: Completion) {
        if !self.stopping {
            self.submit_accept();
        }
        let fd = match (completion.result, completion.accepted) {
            (Ok(_), Some(fd)) => fd,
            (Err(err), _) => {
                tracing::warn!(%err, "accept failed");
                return;
            }
            (Ok(_), None) => return,
        };
        let id = self.next_conn;
        self.next_conn += 1;
        let mut conn = Conn {
            fd: Rc::new(fd),
            decoder: FrameDecoder::new(protocol::max_body_for(self.config.max_payload)),
            out: Vec::new(),
            read_buf: Vec::new(),
            reading: false,
            writing: false,
            write_offset: 0,
            closing: false,
        };
        if let Err(reason) = admit(&conn.fd) {
            tracing::warn!(conn = id, reason, "connection refused");
            encode_error(&mut conn.out, 0, ErrorKind::BadRequest, reason);
            conn.closing = true;
            self.conns.insert(id, conn);
            self.flush(id);
            return;
        }
        self.conns.insert(id, conn);
        self.submit_read(id);
    }

    fn submit_read(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.reading = true;
        let fd = conn.fd.clone();
        let mut buf = std::mem::take(&mut conn.read_buf);
        buf.clear();
        buf.reserve(READ_CHUNK);
        self.reactor
            .submit(Event::ConnRead(id).token(), Op::Read { fd, buf });
    }

    pub(super) fn on_conn_read(&mut self, id: u64, completion: Completion) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.reading = false;
        let n = match completion.result {
            Ok(n) => n,
            Err(err) => {
                if err.raw_os_error() != Some(nix::errno::Errno::ECANCELED as i32) {
                    tracing::debug!(conn = id, %err, "read failed");
                }
                0
            }
        };
        if n == 0 || conn.closing {
            self.close(id);
            return;
        }
        let buf = completion.buf.unwrap_or_default();
        conn.decoder.feed(&buf[..n]);
        conn.read_buf = buf;
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            match conn.decoder.next_frame() {
                None => break,
                Some(Ok(frame)) => self.on_frame(id, frame),
                Some(Err(err)) => {
                    if self.on_frame_error(id, err) {
                        break;
                    }
                }
            }
        }
        let closing = self.conns.get(&id).is_none_or(|c| c.closing);
        if !closing {
            self.submit_read(id);
        }
        self.flush(id);
    }

    /// Answer a frame the decoder refused; `true` when the stream can no
    /// longer be trusted and the connection closes.
    fn on_frame_error(&mut self, id: u64, err: FrameError) -> bool {
        let fatal = err.is_fatal();
        tracing::debug!(conn = id, %err, "bad frame");
        if let Some(conn) = self.conns.get_mut(&id) {
            encode_error(
                &mut conn.out,
                err.request_id().unwrap_or(0),
                err.error_kind(),
                err.to_string(),
            );
            conn.closing |= fatal;
        }
        fatal
    }

    fn on_frame(&mut self, id: u64, frame: Frame) {
        let request_id = frame.request_id;
        let request = match protocol::decode_request(&frame) {
            Ok(request) => request,
            Err(err) => {
                self.respond_error(id, request_id, ErrorKind::BadRequest, err.to_string());
                return;
            }
        };
        match request {
            Request::Invoke(invoke) => self.start_invocation(id, request_id, invoke),
            Request::Trace { invocation_id } => {
                let response = match self.spans.trace_of(invocation_id) {
                    Some(report) => Response::Trace(report),
                    None => Response::Error(ErrorBody::new(
                        ErrorKind::NotFound,
                        format!(
                            "no span of invocation {invocation_id} is recorded (it is still \
                             running, or the store dropped it)"
                        ),
                    )),
                };
                self.respond(id, request_id, &response);
            }
            Request::Profile { name } => {
                let report = crate::trace::profile(&self.spans, &name);
                self.respond(id, request_id, &Response::Profile(report));
            }
            Request::Deploy(spec) => {
                let response = match self.deploy(&spec) {
                    Ok(info) => Response::Deployed(info),
                    Err(err) => {
                        Response::Error(ErrorBody::new(ErrorKind::BadRequest, format!("{err:#}")))
                    }
                };
                self.respond(id, request_id, &response);
            }
            Request::List => {
                let functions = self.registry.list().map(|f| f.info()).collect();
                self.respond(id, request_id, &Response::Functions(functions));
            }
            Request::Remove { name } => {
                let response = if self.remove_function(&name) {
                    Response::Removed { name }
                } else {
                    Response::Error(ErrorBody::new(
                        ErrorKind::NotFound,
                        format!("no function named {name}"),
                    ))
                };
                self.respond(id, request_id, &response);
            }
            Request::Stats { name } => {
                let response = match self.stats_report(name.as_deref()) {
                    Some(report) => Response::Stats(report),
                    None => Response::Error(ErrorBody::new(
                        ErrorKind::NotFound,
                        format!("no function named {}", name.unwrap_or_default()),
                    )),
                };
                self.respond(id, request_id, &response);
            }
            Request::Pretrigger(req) => {
                let response = match self.pretrigger(&req) {
                    Ok(accepted) => Response::Pretriggered(accepted),
                    Err(error) => Response::Error(error),
                };
                self.respond(id, request_id, &response);
            }
        }
    }

    pub(super) fn respond(&mut self, id: u64, request_id: u64, response: &Response) {
        if let Some(conn) = self.conns.get_mut(&id) {
            protocol::encode_response(request_id, response, &mut conn.out);
            self.flush(id);
        }
    }

    fn respond_error(&mut self, id: u64, request_id: u64, kind: ErrorKind, message: String) {
        self.respond(
            id,
            request_id,
            &Response::Error(ErrorBody::new(kind, message)),
        );
    }

    /// Hand queued output to the reactor, one write in flight at a time.
    pub(super) fn flush(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.writing {
            return;
        }
        if conn.out.is_empty() {
            if conn.closing && !conn.reading {
                self.conns.remove(&id);
            }
            return;
        }
        conn.writing = true;
        conn.write_offset = 0;
        let buf = std::mem::take(&mut conn.out);
        let fd = conn.fd.clone();
        self.reactor.submit(
            Event::ConnWrite(id).token(),
            Op::Write { fd, buf, offset: 0 },
        );
    }

    pub(super) fn on_conn_write(&mut self, id: u64, completion: Completion) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.writing = false;
        let mut buf = completion.buf.unwrap_or_default();
        match completion.result {
            Ok(n) if n > 0 => {
                let done = conn.write_offset + n;
                if done < buf.len() {
                    conn.writing = true;
                    conn.write_offset = done;
                    let fd = conn.fd.clone();
                    self.reactor.submit(
                        Event::ConnWrite(id).token(),
                        Op::Write {
                            fd,
                            buf,
                            offset: done,
                        },
                    );
                    return;
                }
                if conn.out.is_empty() {
                    // Keep the allocation for the next responses.
                    buf.clear();
                    conn.out = buf;
                }
                self.flush(id);
            }
            Ok(_) | Err(_) => {
                // The client is gone: whatever was queued for it is dropped.
                conn.out.clear();
                self.close(id);
            }
        }
    }

    /// Stop reading from a connection; it goes away once no operation on
    /// it is in flight.
    pub(super) fn close(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.closing = true;
        if conn.reading {
            self.reactor.cancel(Event::ConnRead(id).token());
        }
        if !conn.reading && !conn.writing {
            self.conns.remove(&id);
        }
    }
}

fn encode_error(out: &mut Vec<u8>, request_id: u64, kind: ErrorKind, message: String) {
    protocol::encode_response(
        request_id,
        &Response::Error(ErrorBody::new(kind, message)),
        out,
    );
}

/// Whom the socket admits: root and the daemon's own user. The socket file
/// is 0600 already; this holds even if its mode is loosened.
fn admit(fd: &OwnedFd) -> Result<(), String> {
    let creds = getsockopt(fd, PeerCredentials).map_err(|e| format!("SO_PEERCRED: {e}"))?;
    let me = nix::unistd::geteuid().as_raw();
    if creds.uid() == 0 || creds.uid() == me {
        Ok(())
    } else {
        Err(format!(
            "permission denied: uid {} may not use this daemon (only root and uid {me})",
            creds.uid()
        ))
    }
}
