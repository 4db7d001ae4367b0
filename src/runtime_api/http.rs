//! HTTP/1.1 for the Runtime API: an incremental request reader over
//! `httparse` (heads, `Content-Length` and chunked bodies, trailers) that
//! bounds everything a runtime can send, and the encoding of answers into
//! one buffer.
//!
//! Everything here is hostile input: the head is bounded in bytes and
//! header count, bodies by the ring's largest message, and anything
//! malformed is an [`HttpError`] after which the connection is closed.

use std::fmt::Write as _;

/// Bounds on what one request may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line plus headers (and, for chunked bodies, the trailers).
    pub max_head: usize,
    /// Headers (and trailers) per request.
    pub max_headers: usize,
    /// Body bytes (after chunked decoding).
    pub max_body: usize,
}

/// The longest chunk-size line (hex size plus extensions) accepted.
const MAX_CHUNK_LINE: usize = 1024;
/// Up to this many buffered bytes a partial head is parsed again on every
/// read (so garbage is refused at once); past it, only when a line ended
/// (a head trickled in byte by byte is not re-parsed per byte, and
/// [`Limits::max_headers`] bounds its lines).
const EAGER_PARSE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Other,
}

/// A request's head, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The path without its query string.
    pub path: String,
    /// Header names lower-cased, values as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The client wants the connection kept after this request
    /// (HTTP/1.1 without `Connection: close`).
    pub keep_alive: bool,
}

impl Head {
    /// The first value of header `name` (lower-case), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The first value of `name` (lower-case) in `headers`, if it is UTF-8.
pub fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .map(str::trim)
}

/// A whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub head: Head,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body, names lower-cased.
    pub trailers: Vec<(String, Vec<u8>)>,
}

/// What the reader has to say after being fed.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete request.
    Request(Request),
    /// The head asks `Expect: 100-continue` and its body has not started:
    /// answer `100 Continue` (then read on).
    Continue,
    /// The body is over [`Limits::max_body`]: answer 413 and close (the
    /// rest of the body is not read).
    TooLarge(Head),
}

/// Malformed input: answer 400 and close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("malformed request: {0}")]
    Parse(httparse::Error),
    #[error("request head over {0} bytes")]
    HeadTooLarge(usize),
    #[error("invalid Content-Length")]
    ContentLength,
    #[error("unsupported Transfer-Encoding (only chunked)")]
    TransferEncoding,
    #[error("both Transfer-Encoding and Content-Length")]
    Framing,
    #[error("malformed chunked body")]
    Chunk,
    #[error("request target is not UTF-8")]
    Target,
}

#[derive(Debug)]
enum State {
    Head,
    /// `Content-Length` body: `remaining` bytes still to come.
    Body {
        head: Head,
        remaining: usize,
        body: Vec<u8>,
        continue_sent: bool,
    },
    Chunked {
        head: Head,
        body: Vec<u8>,
        part: ChunkPart,
        continue_sent: bool,
    },
}

#[derive(Debug, Clone, Copy)]
enum ChunkPart {
    Size,
    Data(usize),
    DataEnd,
    Trailers,
}

/// Reads requests off one connection, one at a time.
#[derive(Debug)]
pub struct Reader {
    limits: Limits,
    /// Bytes received and not yet consumed.
    buf: Vec<u8>,
    state: State,
    /// A line ended since the head was last parsed (or a request ended,
    /// leaving a pipelined one in `buf`).
    line_ended: bool,
}

impl Reader {
    pub fn new(limits: Limits) -> Reader {
        Reader {
            limits,
            buf: Vec::new(),
            state: State::Head,
            line_ended: false,
        }
    }

    /// Bytes received but not consumed yet (a pipelined request's, or a
    /// partial one's).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Add received bytes. A `Content-Length` body is copied straight to
    /// its place.
    pub fn feed(&mut self, data: &[u8]) {
        if let State::Body {
            remaining, body, ..
        } = &mut self.state
        {
            if self.buf.is_empty() {
                let take = data.len().min(*remaining);
                body.extend_from_slice(&data[..take]);
                *remaining -= take;
                self.buf.extend_from_slice(&data[take..]);
                return;
            }
        }
        self.line_ended |= data.contains(&b'\n');
        self.buf.extend_from_slice(data);
    }

    /// Advance as far as the buffered bytes allow.
    pub fn next(&mut self) -> Result<Option<Event>, HttpError> {
        loop {
            match &mut self.state {
                State::Head => {
                    let Some(head_len) = self.parse_head()? else {
                        return Ok(None);
                    };
                    let (head, framing) = head_len;
                    match framing {
                        Framing::Length(len) if len > self.limits.max_body => {
                            return Ok(Some(Event::TooLarge(head)))
                        }
                        Framing::Length(len) => {
                            let take = len.min(self.buf.len());
                            let mut body = Vec::with_capacity(len);
                            body.extend(self.buf.drain(..take));
                            self.state = State::Body {
                                head,
                                remaining: len - take,
                                body,
                                continue_sent: false,
                            };
                        }
                        Framing::Chunked => {
                            self.state = State::Chunked {
                                head,
                                body: Vec::new(),
                                part: ChunkPart::Size,
                                continue_sent: false,
                            };
                        }
                    }
                }
                State::Body {
                    head,
                    remaining,
                    body,
                    continue_sent,
                } => {
                    if *remaining > 0 {
                        let take = (*remaining).min(self.buf.len());
                        body.extend(self.buf.drain(..take));
                        *remaining -= take;
                    }
                    if *remaining > 0 {
                        return Ok(wants_continue(head, body, continue_sent));
                    }
                    let State::Body { head, body, .. } =
                        std::mem::replace(&mut self.state, State::Head)
                    else {
                        unreachable!("matched above")
                    };
                    self.line_ended = true;
                    return Ok(Some(Event::Request(Request {
                        head,
                        body,
                        trailers: Vec::new(),
                    })));
                }
                State::Chunked {
                    head,
                    body,
                    part,
                    continue_sent,
                } => match *part {
                    ChunkPart::Size => match httparse::parse_chunk_size(&self.buf) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            self.buf.drain(..used);
                            let size = usize::try_from(size).map_err(|_| HttpError::Chunk)?;
                            if size == 0 {
                                *part = ChunkPart::Trailers;
                            } else if size
                                > self.limits.max_body - body.len().min(self.limits.max_body)
                            {
                                let head = head.clone();
                                return Ok(Some(Event::TooLarge(head)));
                            } else {
                                *part = ChunkPart::Data(size);
                            }
                        }
                        Ok(httparse::Status::Partial) if self.buf.len() > MAX_CHUNK_LINE => {
                            return Err(HttpError::Chunk)
                        }
                        Ok(httparse::Status::Partial) => {
                            return Ok(wants_continue(head, body, continue_sent))
                        }
                        Err(_) => return Err(HttpError::Chunk),
                    },
                    ChunkPart::Data(left) => {
                        let take = left.min(self.buf.len());
                        body.extend(self.buf.drain(..take));
                        *part = match left - take {
                            0 => ChunkPart::DataEnd,
                            more => ChunkPart::Data(more),
                        };
                        if take == 0 {
                            return Ok(None);
                        }
                    }
                    ChunkPart::DataEnd => {
                        if self.buf.len() < 2 {
                            return Ok(None);
                        }
                        if &self.buf[..2] != b"\r\n" {
                            return Err(HttpError::Chunk);
                        }
                        self.buf.drain(..2);
                        *part = ChunkPart::Size;
                    }
                    ChunkPart::Trailers => {
                        let mut fields = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
                        match httparse::parse_headers(&self.buf, &mut fields) {
                            Ok(httparse::Status::Complete((used, fields))) => {
                                let trailers = owned_headers(fields);
                                self.buf.drain(..used);
                                let State::Chunked { head, body, .. } =
                                    std::mem::replace(&mut self.state, State::Head)
                                else {
                                    unreachable!("matched above")
                                };
                                self.line_ended = true;
                                return Ok(Some(Event::Request(Request {
                                    head,
                                    body,
                                    trailers,
                                })));
                            }
                            Ok(httparse::Status::Partial)
                                if self.buf.len() > self.limits.max_head =>
                            {
                                return Err(HttpError::HeadTooLarge(self.limits.max_head))
                            }
                            Ok(httparse::Status::Partial) => return Ok(None),
                            Err(e) => return Err(HttpError::Parse(e)),
                        }
                    }
                },
            }
        }
    }

    /// Parse a complete head off the buffer, if there is one.
    fn parse_head(&mut self) -> Result<Option<(Head, Framing)>, HttpError> {
        if self.buf.len() > EAGER_PARSE && !self.line_ended {
            return if self.buf.len() > self.limits.max_head {
                Err(HttpError::HeadTooLarge(self.limits.max_head))
            } else {
                Ok(None)
            };
        }
        self.line_ended = false;
        let mut fields = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut request = httparse::Request::new(&mut fields);
        let used = match request.parse(&self.buf) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) if self.buf.len() > self.limits.max_head => {
                return Err(HttpError::HeadTooLarge(self.limits.max_head))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(HttpError::Parse(e)),
        };
        if used > self.limits.max_head {
            return Err(HttpError::HeadTooLarge(self.limits.max_head));
        }
        let method = match request.method {
            Some("GET") => Method::Get,
            Some("POST") => Method::Post,
            _ => Method::Other,
        };
        let target = request.path.ok_or(HttpError::Target)?;
        let path = target.split('?').next().unwrap_or_default().to_owned();
        let http11 = request.version == Some(1);
        let headers = owned_headers(request.headers);
        let connection = header(&headers, "connection").map(str::to_ascii_lowercase);
        let keep_alive = http11 && connection.as_deref() != Some("close");
        let framing = framing(&headers)?;
        self.buf.drain(..used);
        let head = Head {
            method,
            path,
            headers,
            keep_alive,
        };
        Ok(Some((head, framing)))
    }
}

/// `Event::Continue` once, when the head asked for it and no body byte
/// has come yet.
fn wants_continue(head: &Head, body: &[u8], sent: &mut bool) -> Option<Event> {
    let asked = head
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if asked && body.is_empty() && !*sent {
        *sent = true;
        return Some(Event::Continue);
    }
    None
}

enum Framing {
    Length(usize),
    Chunked,
}

/// How the body is delimited. A request with both framings, several
/// differing lengths, or a transfer coding other than `chunked` is
/// refused (request smuggling lives in the gaps).
fn framing(headers: &[(String, Vec<u8>)]) -> Result<Framing, HttpError> {
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for (name, value) in headers {
        match name.as_str() {
            "content-length" => {
                let text = std::str::from_utf8(value).map_err(|_| HttpError::ContentLength)?;
                let text = text.trim();
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(HttpError::ContentLength);
                }
                let n: usize = text.parse().map_err(|_| HttpError::ContentLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(HttpError::ContentLength);
                }
                length = Some(n);
            }
            "transfer-encoding" => {
                let text = std::str::from_utf8(value).map_err(|_| HttpError::TransferEncoding)?;
                if chunked || !text.trim().eq_ignore_ascii_case("chunked") {
                    return Err(HttpError::TransferEncoding);
                }
                chunked = true;
            }
            _ => {}
        }
    }
    match (chunked, length) {
        (true, Some(_)) => Err(HttpError::Framing),
        (true, None) => Ok(Framing::Chunked),
        (false, length) => Ok(Framing::Length(length.unwrap_or(0))),
    }
}

fn owned_headers(fields: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    fields
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect()
}

/// An answer: status, extra headers, body. Encoded into one buffer so it
/// leaves in one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// `202 {"status":"OK"}`, Lambda's answer to every accepted post.
    pub fn accepted() -> Answer {
        Answer::json(202, br#"{"status":"OK"}"#.to_vec())
    }

    /// An error answer with Lambda's error JSON.
    pub fn error(status: u16, error_type: &str, message: &str) -> Answer {
        let body = serde_json::json!({ "errorMessage": message, "errorType": error_type });
        Answer::json(status, body.to_string().into_bytes())
    }

    fn json(status: u16, body: Vec<u8>) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// Status line, headers (`Content-Type: application/json`,
    /// `Content-Length`, `Connection: close` when `close`) and body.
    pub fn encode(&self, close: bool) -> Vec<u8> {
        let mut head = String::with_capacity(256);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            self.body.len()
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = Vec::with_capacity(head.len() + self.body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// Whether `value` may go into a header as it is (no control characters,
/// so nothing can end the header early).
pub fn header_safe(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
