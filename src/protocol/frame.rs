//! Frames: the fixed 16-byte header, and an incremental decoder that checks
//! every size before it allocates.
//!
//! ```text
//! offset  size  field
//!      0     4  len         bytes after this field (12 + body), u32 LE
//!      4     2  magic       0x5053 LE (the bytes "SP")
//!      6     1  version     1
//!      7     1  kind        FrameKind code
//!      8     8  request_id  chosen by the client, echoed by the daemon, u64 LE
//!     16     …  body
//! ```

use thiserror::Error;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 16;
/// Header bytes counted by the `len` field (everything after it).
pub const LEN_COUNTED_HEADER: usize = HEADER_LEN - 4;
/// The frame magic, `0x5053` (on the wire, little-endian: `b"SP"`).
pub const MAGIC: u16 = 0x5053;
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;

/// What a frame carries. Requests have the high bit clear, responses set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    Deploy = 0x01,
    Invoke = 0x02,
    List = 0x03,
    Remove = 0x04,
    Stats = 0x05,
    Pretrigger = 0x06,
    Trace = 0x07,
    Profile = 0x08,
    Deployed = 0x81,
    Invoked = 0x82,
    Functions = 0x83,
    Removed = 0x84,
    StatsReport = 0x85,
    Pretriggered = 0x86,
    TraceReport = 0x87,
    ProfileReport = 0x88,
    Error = 0xFF,
}

impl FrameKind {
    pub const ALL: [FrameKind; 17] = [
        FrameKind::Deploy,
        FrameKind::Invoke,
        FrameKind::List,
        FrameKind::Remove,
        FrameKind::Stats,
        FrameKind::Pretrigger,
        FrameKind::Trace,
        FrameKind::Profile,
        FrameKind::Deployed,
        FrameKind::Invoked,
        FrameKind::Functions,
        FrameKind::Removed,
        FrameKind::StatsReport,
        FrameKind::Pretriggered,
        FrameKind::TraceReport,
        FrameKind::ProfileReport,
        FrameKind::Error,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<FrameKind> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    pub fn is_request(self) -> bool {
        self.code() & 0x80 == 0
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FrameKind::Deploy => "Deploy",
            FrameKind::Invoke => "Invoke",
            FrameKind::List => "List",
            FrameKind::Remove => "Remove",
            FrameKind::Stats => "Stats",
            FrameKind::Pretrigger => "Pretrigger",
            FrameKind::Trace => "Trace",
            FrameKind::Profile => "Profile",
            FrameKind::Deployed => "Deployed",
            FrameKind::Invoked => "Invoked",
            FrameKind::Functions => "Functions",
            FrameKind::Removed => "Removed",
            FrameKind::StatsReport => "StatsReport",
            FrameKind::Pretriggered => "Pretriggered",
            FrameKind::TraceReport => "TraceReport",
            FrameKind::ProfileReport => "ProfileReport",
            FrameKind::Error => "Error",
        }
    }
}

/// One decoded frame. `kind` is the raw code: message decoding rejects
/// codes it does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub request_id: u64,
    pub body: Vec<u8>,
}

/// A frame the decoder refused. [`FrameError::is_fatal`] says whether the
/// stream can still be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The body is over the limit; its bytes are being discarded as they
    /// arrive and the frame after it decodes normally.
    #[error("frame of request {request_id} is {len} bytes, over the {limit} byte limit")]
    TooLarge {
        request_id: u64,
        len: u64,
        limit: usize,
    },
    /// The frame speaks another protocol version; its body is discarded.
    #[error(
        "frame of request {request_id} has protocol version {version}, this side speaks {VERSION}"
    )]
    UnsupportedVersion { request_id: u64, version: u8 },
    /// Fatal: the stream is not sprout frames (or lost its framing).
    #[error("bad frame magic {found:#06x} (expected {MAGIC:#06x})")]
    BadMagic { found: u16 },
    /// Fatal: the length field cannot even hold the header.
    #[error("frame length {len} is shorter than the {LEN_COUNTED_HEADER} byte header")]
    BadLength { len: u32 },
    /// The stream ended in the middle of a frame.
    #[error("connection closed mid-frame ({buffered} bytes of an unfinished frame)")]
    Truncated { buffered: u64 },
}

impl FrameError {
    /// True when the stream can no longer be trusted: answer with an error
    /// frame (request id 0) and close the connection.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            FrameError::BadMagic { .. }
                | FrameError::BadLength { .. }
                | FrameError::Truncated { .. }
        )
    }

    /// The request the error belongs to, when the header got that far.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            FrameError::TooLarge { request_id, .. }
            | FrameError::UnsupportedVersion { request_id, .. } => Some(*request_id),
            _ => None,
        }
    }

    /// The error kind to answer with.
    pub fn error_kind(&self) -> super::ErrorKind {
        match self {
            FrameError::TooLarge { .. } => super::ErrorKind::TooLarge,
            FrameError::UnsupportedVersion { .. } => super::ErrorKind::UnsupportedVersion,
            _ => super::ErrorKind::BadRequest,
        }
    }
}

/// Append a frame header for a body of `body_len` bytes.
///
/// # Panics
/// If `body_len` does not fit the `u32` length field (over 4 GiB); callers
/// bound bodies by their payload limit first.
pub fn write_header(out: &mut Vec<u8>, kind: FrameKind, request_id: u64, body_len: usize) {
    let len = u32::try_from(body_len + LEN_COUNTED_HEADER).expect("frame body over 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.push(VERSION);
    out.push(kind.code());
    out.extend_from_slice(&request_id.to_le_bytes());
}

/// Append a whole frame: header and body.
pub fn encode_frame(out: &mut Vec<u8>, kind: FrameKind, request_id: u64, body: &[u8]) {
    out.reserve(HEADER_LEN + body.len());
    write_header(out, kind, request_id, body.len());
    out.extend_from_slice(body);
}

/// Incremental frame decoder. Feed it whatever the socket gave, then drain
/// it with [`FrameDecoder::next_frame`] until `None`; call
/// [`FrameDecoder::finish`] at end of stream.
///
/// Memory is bounded by one frame of `max_body` plus what was fed since the
/// last drain: a too-large body is never stored, its bytes are dropped as
/// they arrive.
#[derive(Debug)]
pub struct FrameDecoder {
    max_body: usize,
    buf: Vec<u8>,
    /// Start of the undecoded bytes in `buf`.
    pos: usize,
    /// Body bytes of a refused frame still to drop.
    skip: u64,
    broken: bool,
}

impl FrameDecoder {
    pub fn new(max_body: usize) -> FrameDecoder {
        FrameDecoder {
            max_body,
            buf: Vec::new(),
            pos: 0,
            skip: 0,
            broken: false,
        }
    }

    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// True after a fatal error: nothing more will decode.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// True when no partial frame (or discarded body) is pending.
    pub fn is_idle(&self) -> bool {
        self.skip == 0 && self.pos == self.buf.len()
    }

    /// Take bytes read from the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if self.broken {
            return;
        }
        if self.skip > 0 {
            let n = self.skip.min(bytes.len() as u64) as usize;
            self.skip -= n as u64;
            bytes = &bytes[n..];
        }
        if bytes.is_empty() {
            return;
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame or error, `None` when more bytes are needed.
    /// A fatal error is returned once; after it the decoder yields nothing.
    pub fn next_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        if self.broken || self.skip > 0 {
            return None;
        }
        let avail = &self.buf[self.pos..];
        // Check what is there as early as it is there, so garbage is
        // refused without waiting for a whole header.
        if avail.len() >= 4 {
            let len = u32::from_le_bytes(avail[0..4].try_into().unwrap());
            if avail.len() >= 6 {
                let magic = u16::from_le_bytes(avail[4..6].try_into().unwrap());
                if magic != MAGIC {
                    return Some(Err(self.fail(FrameError::BadMagic { found: magic })));
                }
            }
            if (len as usize) < LEN_COUNTED_HEADER {
                return Some(Err(self.fail(FrameError::BadLength { len })));
            }
        }
        if avail.len() < HEADER_LEN {
            return None;
        }
        let len = u32::from_le_bytes(avail[0..4].try_into().unwrap());
        let version = avail[6];
        let kind = avail[7];
        let request_id = u64::from_le_bytes(avail[8..16].try_into().unwrap());
        let body_len = len as usize - LEN_COUNTED_HEADER;
        if version != VERSION || body_len > self.max_body {
            self.pos += HEADER_LEN;
            self.discard(body_len as u64);
            return Some(Err(if version != VERSION {
                FrameError::UnsupportedVersion {
                    request_id,
                    version,
                }
            } else {
                FrameError::TooLarge {
                    request_id,
                    len: body_len as u64,
                    limit: self.max_body,
                }
            }));
        }
        let avail_len = avail.len();
        if avail_len < HEADER_LEN + body_len {
            // Reserve for the whole frame once; its size was checked above.
            self.buf.reserve(HEADER_LEN + body_len - avail_len);
            return None;
        }
        let body = avail[HEADER_LEN..HEADER_LEN + body_len].to_vec();
        self.pos += HEADER_LEN + body_len;
        Some(Ok(Frame {
            kind,
            request_id,
            body,
        }))
    }

    /// Signal end of stream: an error if it cut a frame short.
    pub fn finish(&mut self) -> Result<(), FrameError> {
        if self.broken || self.is_idle() {
            return Ok(());
        }
        let buffered = (self.buf.len() - self.pos) as u64;
        Err(self.fail(FrameError::Truncated { buffered }))
    }

    /// Drop `n` body bytes: those already buffered now, the rest in `feed`.
    fn discard(&mut self, n: u64) {
        let buffered = (self.buf.len() - self.pos) as u64;
        let now = n.min(buffered);
        self.pos += now as usize;
        self.skip = n - now;
    }

    fn fail(&mut self, err: FrameError) -> FrameError {
        self.broken = true;
        self.buf = Vec::new();
        self.pos = 0;
        self.skip = 0;
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: FrameKind, id: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, kind, id, body);
        out
    }

    fn drain(dec: &mut FrameDecoder) -> Vec<Result<Frame, FrameError>> {
        std::iter::from_fn(|| dec.next_frame()).collect()
    }

    #[test]
    fn header_layout_is_little_endian() {
        let bytes = frame(FrameKind::Invoke, 0x0102030405060708, b"abc");
        assert_eq!(
            bytes,
            [15, 0, 0, 0, b'S', b'P', 1, 0x02, 8, 7, 6, 5, 4, 3, 2, 1, b'a', b'b', b'c']
        );
    }

    #[test]
    fn decodes_frames_fed_whole_and_back_to_back() {
        let mut bytes = frame(FrameKind::List, 1, b"");
        bytes.extend(frame(FrameKind::Invoke, 2, b"hello"));
        let mut dec = FrameDecoder::new(1024);
        dec.feed(&bytes);
        let got = drain(&mut dec);
        assert_eq!(
            got,
            vec![
                Ok(Frame {
                    kind: 0x03,
                    request_id: 1,
                    body: vec![]
                }),
                Ok(Frame {
                    kind: 0x02,
                    request_id: 2,
                    body: b"hello".to_vec()
                }),
            ]
        );
        assert!(dec.is_idle());
        assert_eq!(dec.finish(), Ok(()));
    }

    #[test]
    fn decodes_bytes_fed_one_at_a_time() {
        let mut bytes = Vec::new();
        for id in 0..5u64 {
            bytes.extend(frame(
                FrameKind::Invoke,
                id,
                &vec![id as u8; id as usize * 7],
            ));
        }
        let mut dec = FrameDecoder::new(1024);
        let mut got = Vec::new();
        for b in &bytes {
            dec.feed(std::slice::from_ref(b));
            got.extend(drain(&mut dec));
        }
        let ids: Vec<u64> = got.iter().map(|f| f.as_ref().unwrap().request_id).collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4]);
        assert_eq!(got[3].as_ref().unwrap().body, vec![3u8; 21]);
    }

    #[test]
    fn oversized_frame_is_skipped_and_the_next_decodes() {
        let mut bytes = frame(FrameKind::Invoke, 7, &[0xAA; 100]);
        bytes.extend(frame(FrameKind::Invoke, 8, b"ok"));
        // Whole, and split at every position.
        for split in 0..=bytes.len() {
            let mut dec = FrameDecoder::new(50);
            dec.feed(&bytes[..split]);
            let mut got = drain(&mut dec);
            dec.feed(&bytes[split..]);
            got.extend(drain(&mut dec));
            assert_eq!(
                got,
                vec![
                    Err(FrameError::TooLarge {
                        request_id: 7,
                        len: 100,
                        limit: 50
                    }),
                    Ok(Frame {
                        kind: 0x02,
                        request_id: 8,
                        body: b"ok".to_vec()
                    }),
                ],
                "split at {split}"
            );
            assert!(dec.is_idle());
        }
    }

    #[test]
    fn oversized_body_is_not_stored() {
        let mut dec = FrameDecoder::new(16);
        let mut header = Vec::new();
        write_header(&mut header, FrameKind::Invoke, 3, 10 << 20);
        dec.feed(&header);
        assert!(matches!(
            dec.next_frame(),
            Some(Err(FrameError::TooLarge { .. }))
        ));
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..10 {
            dec.feed(&chunk);
            assert!(dec.next_frame().is_none());
            assert!(dec.buf.capacity() < 4096, "discarded bytes were buffered");
        }
        assert!(dec.is_idle());
    }

    #[test]
    fn huge_length_field_allocates_nothing() {
        let mut dec = FrameDecoder::new(1024);
        let mut header = Vec::new();
        write_header(&mut header, FrameKind::Invoke, 9, u32::MAX as usize - 12);
        dec.feed(&header);
        assert!(matches!(
            dec.next_frame(),
            Some(Err(FrameError::TooLarge { request_id: 9, .. }))
        ));
        assert!(dec.buf.capacity() < 4096);
        assert!(matches!(dec.finish(), Err(FrameError::Truncated { .. })));
    }

    #[test]
    fn bad_magic_is_fatal_and_reported_early() {
        let mut dec = FrameDecoder::new(1024);
        dec.feed(b"GET / HTTP/1.1\r\n\r\n");
        let err = dec.next_frame().unwrap().unwrap_err();
        assert_eq!(err, FrameError::BadMagic { found: 0x202f });
        assert!(err.is_fatal());
        assert!(dec.is_broken());
        dec.feed(&frame(FrameKind::List, 1, b""));
        assert!(dec.next_frame().is_none());

        // Six bytes are enough to refuse.
        let mut dec = FrameDecoder::new(1024);
        dec.feed(&[20, 0, 0, 0, 0xde, 0xad]);
        assert!(matches!(
            dec.next_frame(),
            Some(Err(FrameError::BadMagic { .. }))
        ));
    }

    #[test]
    fn bad_length_is_fatal() {
        let mut dec = FrameDecoder::new(1024);
        let mut bytes = frame(FrameKind::List, 1, b"");
        bytes[0] = 11;
        dec.feed(&bytes);
        let err = dec.next_frame().unwrap().unwrap_err();
        assert_eq!(err, FrameError::BadLength { len: 11 });
        assert!(err.is_fatal());
    }

    #[test]
    fn unsupported_version_skips_the_frame() {
        let mut bytes = frame(FrameKind::Invoke, 5, b"from the future");
        bytes[6] = 2;
        bytes.extend(frame(FrameKind::List, 6, b""));
        let mut dec = FrameDecoder::new(1024);
        dec.feed(&bytes);
        let got = drain(&mut dec);
        assert_eq!(
            got[0],
            Err(FrameError::UnsupportedVersion {
                request_id: 5,
                version: 2
            })
        );
        assert!(!got[0].as_ref().unwrap_err().is_fatal());
        assert_eq!(got[1].as_ref().unwrap().request_id, 6);
    }

    #[test]
    fn eof_mid_frame_is_truncated() {
        let bytes = frame(FrameKind::Invoke, 1, b"0123456789");
        for cut in 1..bytes.len() {
            let mut dec = FrameDecoder::new(1024);
            dec.feed(&bytes[..cut]);
            assert!(dec.next_frame().is_none(), "cut at {cut}");
            assert_eq!(
                dec.finish(),
                Err(FrameError::Truncated {
                    buffered: cut as u64
                })
            );
        }
        let mut dec = FrameDecoder::new(1024);
        assert_eq!(dec.finish(), Ok(()));
    }

    #[test]
    fn random_splits_decode_the_same_frames() {
        let mut rng = crate::protocol::test_rng::Rng::new(0x5eed);
        for round in 0..200 {
            let mut bytes = Vec::new();
            let mut want = Vec::new();
            for id in 0..rng.below(8) as u64 {
                let body: Vec<u8> = (0..rng.below(300)).map(|_| rng.below(256) as u8).collect();
                bytes.extend(frame(FrameKind::Invoke, id, &body));
                want.push(if body.len() > 200 {
                    Err(FrameError::TooLarge {
                        request_id: id,
                        len: body.len() as u64,
                        limit: 200,
                    })
                } else {
                    Ok(Frame {
                        kind: 0x02,
                        request_id: id,
                        body,
                    })
                });
            }
            let mut dec = FrameDecoder::new(200);
            let mut got = Vec::new();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = (rng.below(64) + 1).min(rest.len());
                dec.feed(&rest[..n]);
                rest = &rest[n..];
                got.extend(drain(&mut dec));
            }
            assert_eq!(got, want, "round {round}");
            assert_eq!(dec.finish(), Ok(()));
        }
    }
}
