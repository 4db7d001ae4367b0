//! OTLP/HTTP export of spans: a background thread POSTs protobuf
//! `ExportTraceServiceRequest`s to a collector. The event loop only hands
//! batches over a bounded channel: when the collector is slow or down,
//! batches are dropped and counted, never waited for.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use super::store::Span;
use super::Parent;

/// Spans gathered before a batch is handed to the exporter thread.
pub const BATCH: usize = 256;
/// Batches waiting for the exporter thread; more are dropped.
const QUEUED_BATCHES: usize = 16;
/// Connect, write and read timeout of one POST.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtlpStartError {
    #[error("{url:?} is not an http://host:port/path URL")]
    BadUrl { url: String },
    #[error("spawning the OTLP exporter thread failed")]
    Spawn(#[source] std::io::Error),
}

/// One span as exported: owned and `Send`.
#[derive(Debug, Clone)]
struct ExportSpan {
    trace_id: u128,
    span_id: u64,
    parent_span_id: Option<u64>,
    name: String,
    version: u64,
    sandbox: u64,
    depth: u32,
    cold: bool,
    detached: bool,
    start_ns: u64,
    end_ns: u64,
    phases_us: [u64; 4],
    error: Option<&'static str>,
}

impl ExportSpan {
    fn from_span(span: &Span) -> ExportSpan {
        let start_ns = span.start_unix_us.saturating_mul(1000);
        ExportSpan {
            trace_id: span.trace_id,
            span_id: span.invocation,
            parent_span_id: span.parent.map(|p| match p {
                Parent::Invocation(id) | Parent::Remote(id) => id,
            }),
            name: span.function.name.clone(),
            version: span.function.version,
            sandbox: span.sandbox,
            depth: span.depth,
            cold: span.cold,
            detached: span.detached,
            start_ns,
            end_ns: start_ns.saturating_add(span.total_us.saturating_mul(1000)),
            phases_us: [span.queue_us, span.acquire_us, span.init_us, span.run_us],
            error: span.error.map(|k| k.as_str()),
        }
    }
}

/// Counters shared with the exporter thread.
#[derive(Debug, Default)]
pub struct OtlpCounters {
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans dropped: the queue was full, or the collector failed.
    pub dropped: AtomicU64,
}

/// The event loop's handle on the exporter thread.
#[derive(Debug)]
pub struct OtlpExporter {
    batch: Vec<ExportSpan>,
    queue: SyncSender<Vec<ExportSpan>>,
    counters: Arc<OtlpCounters>,
}

struct Target {
    addr: String,
    host: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, OtlpStartError> {
    let bad = || OtlpStartError::BadUrl {
        url: url.to_owned(),
    };
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/v1/traces"),
    };
    if authority.is_empty() {
        return Err(bad());
    }
    let addr = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok(Target {
        addr,
        host: authority.to_owned(),
        path: path.to_owned(),
    })
}

impl OtlpExporter {
    /// Start the exporter thread for `url` (`http://host:port/path`; the
    /// path defaults to `/v1/traces`).
    pub fn start(url: &str) -> Result<OtlpExporter, OtlpStartError> {
        let target = parse_url(url)?;
        let (queue, batches) = sync_channel::<Vec<ExportSpan>>(QUEUED_BATCHES);
        let counters = Arc::new(OtlpCounters::default());
        let thread_counters = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("sprout-otlp".into())
            .spawn(move || {
                for batch in batches {
                    let body = encode_request(&batch);
                    match post(&target, &body) {
                        Ok(()) => thread_counters
                            .exported
                            .fetch_add(batch.len() as u64, Ordering::Relaxed),
                        Err(err) => {
                            tracing::debug!(%err, spans = batch.len(), "OTLP export failed");
                            thread_counters
                                .dropped
                                .fetch_add(batch.len() as u64, Ordering::Relaxed)
                        }
                    };
                }
            })
            .map_err(OtlpStartError::Spawn)?;
        Ok(OtlpExporter {
            batch: Vec::with_capacity(BATCH),
            queue,
            counters,
        })
    }

    pub fn counters(&self) -> &OtlpCounters {
        &self.counters
    }

    /// Add a finished span; a full batch goes to the thread.
    pub fn add(&mut self, span: &Span) {
        self.batch.push(ExportSpan::from_span(span));
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    /// Hand what is gathered to the thread, or drop it if the thread is
    /// behind (never blocks).
    pub fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        match self.queue.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) => {
                self.counters
                    .dropped
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

/// One HTTP/1.1 POST; Ok on a 2xx status.
fn post(target: &Target, body: &[u8]) -> std::io::Result<()> {
    let addr = target
        .addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("the collector's address resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        target.path,
        target.host,
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut status = [0u8; 12];
    stream.read_exact(&mut status)?;
    // "HTTP/1.1 200"
    if status.starts_with(b"HTTP/1.") && status[9] == b'2' {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "collector answered {:?}",
            String::from_utf8_lossy(&status)
        )))
    }
}

// --- protobuf, by hand: only the messages and fields sprout writes ----

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn message(out: &mut Vec<u8>, field: u32, build: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    build(&mut inner);
    bytes_field(out, field, &inner);
}

fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

enum Value<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
}

/// `KeyValue { key = 1; AnyValue value = 2 }`, `AnyValue { string = 1;
/// bool = 2; int64 = 3 }`.
fn attribute(out: &mut Vec<u8>, field: u32, name: &str, value: Value<'_>) {
    message(out, field, |kv| {
        bytes_field(kv, 1, name.as_bytes());
        message(kv, 2, |any| match value {
            Value::Str(s) => bytes_field(any, 1, s.as_bytes()),
            Value::Bool(b) => {
                key(any, 2, 0);
                varint(any, u64::from(b));
            }
            Value::Int(i) => {
                key(any, 3, 0);
                varint(any, i as u64);
            }
        });
    });
}

/// `ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }`
/// with one `ResourceSpans { Resource resource = 1; repeated ScopeSpans
/// scope_spans = 2 }` holding one `ScopeSpans { scope = 1; spans = 2 }`.
fn encode_request(spans: &[ExportSpan]) -> Vec<u8> {
    let mut out = Vec::new();
    message(&mut out, 1, |resource_spans| {
        message(resource_spans, 1, |resource| {
            attribute(resource, 1, "service.name", Value::Str("sprout"));
        });
        message(resource_spans, 2, |scope_spans| {
            message(scope_spans, 1, |scope| {
                bytes_field(scope, 1, b"sprout");
                bytes_field(scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
            });
            for span in spans {
                message(scope_spans, 2, |s| encode_span(s, span));
            }
        });
    });
    out
}

/// `Span { trace_id = 1; span_id = 2; parent_span_id = 4; name = 5;
/// kind = 6; start_time_unix_nano = 7; end_time_unix_nano = 8;
/// attributes = 9; status = 15 }`.
fn encode_span(out: &mut Vec<u8>, span: &ExportSpan) {
    bytes_field(out, 1, &span.trace_id.to_be_bytes());
    bytes_field(out, 2, &span.span_id.to_be_bytes());
    if let Some(parent) = span.parent_span_id {
        bytes_field(out, 4, &parent.to_be_bytes());
    }
    bytes_field(out, 5, span.name.as_bytes());
    key(out, 6, 0);
    varint(out, 2); // SPAN_KIND_SERVER
    fixed64(out, 7, span.start_ns);
    fixed64(out, 8, span.end_ns);
    let int = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
    attribute(out, 9, "sprout.function.version", int(span.version));
    attribute(out, 9, "sprout.sandbox", int(span.sandbox));
    attribute(out, 9, "sprout.depth", int(u64::from(span.depth)));
    attribute(out, 9, "sprout.cold", Value::Bool(span.cold));
    attribute(out, 9, "sprout.async", Value::Bool(span.detached));
    for (name, us) in ["queue_us", "acquire_us", "init_us", "run_us"]
        .iter()
        .zip(span.phases_us)
    {
        attribute(out, 9, &format!("sprout.{name}"), int(us));
    }
    // Status { message = 2; code = 3 } (1 ok, 2 error).
    message(out, 15, |status| {
        if let Some(kind) = span.error {
            bytes_field(status, 2, kind.as_bytes());
        }
        key(status, 3, 0);
        varint(status, if span.error.is_some() { 2 } else { 1 });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let t = parse_url("http://127.0.0.1:4318/v1/traces").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.path.as_str()),
            ("127.0.0.1:4318", "/v1/traces")
        );
        let t = parse_url("http://collector").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.path.as_str()),
            ("collector:80", "/v1/traces")
        );
        assert!(parse_url("https://x/").is_err());
        assert!(parse_url("http:///v1").is_err());
    }

    #[test]
    fn varints_and_keys_are_protobuf() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        out.clear();
        key(&mut out, 15, 2);
        assert_eq!(out, [0x7a]);
    }
}
