//! The real server over TCP against a real ring: the test plays the
//! daemon (the ring's host end) and the runtime client (raw HTTP).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::*;
use crate::ring::{invoke_meta, parse_function_error, HostRing, RuntimeMessage};
use crate::sys::process::pidfd_open;

struct Bridge {
    host: HostRing,
    addr: SocketAddr,
    child: std::process::Child,
    thread: Option<JoinHandle<Result<ExitStatus, BridgeError>>>,
}

impl Bridge {
    /// A bridge whose "bootstrap" is `sh -c script`.
    fn start(max_message: usize, script: &str) -> Bridge {
        let (host, end) = HostRing::create(max_message).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let child = Command::new("/bin/sh")
            .args(["-c", script])
            .spawn()
            .unwrap();
        let pidfd = pidfd_open(child.id() as i32).unwrap();
        let thread = std::thread::spawn(move || {
            let ring = RuntimeRing::from_fds(end.memfd, end.request_bell, end.response_bell)
                .expect("map the ring");
            serve(
                listener,
                ring,
                pidfd.as_fd(),
                Function::new("f", Some("eu-west-1")),
            )
        });
        Bridge {
            host,
            addr,
            child,
            thread: Some(thread),
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
    }

    /// The next ring message, waiting up to 5 s.
    fn message(&mut self) -> RuntimeMessage {
        let start = Instant::now();
        loop {
            if let Some(message) = self.host.recv().unwrap() {
                return message;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "no ring message");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn no_message(&mut self) {
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(self.host.recv().unwrap(), None);
    }

    fn invoke(&mut self, id: u64, meta: &[u8], payload: &[u8]) {
        self.host.send_invoke(id, meta, payload).unwrap();
    }

    /// Wait for the bridge to end.
    fn finish(&mut self) -> ExitStatus {
        let thread = self.thread.take().unwrap();
        thread.join().unwrap().unwrap()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Read one answer (head, then its Content-Length body).
fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut fields);
        if let httparse::Status::Complete(used) = response.parse(&buf).unwrap() {
            let headers: Vec<(String, String)> = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let status = response.code.unwrap();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.parse().unwrap());
            while buf.len() < used + len {
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0, "closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[used..used + len].to_vec();
            return Reply {
                status,
                headers,
                body,
            };
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before an answer");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn send(stream: &mut TcpStream, raw: &[u8]) -> Reply {
    stream.write_all(raw).unwrap();
    read_reply(stream)
}

fn post(path: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST /2018-06-01/runtime/{path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

const NEXT: &[u8] = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n";

fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

#[test]
fn invocations_flow_over_kept_and_fresh_connections() {
    let mut bridge = Bridge::start(4096, "sleep 30");
    let mut a = bridge.connect();
    a.write_all(NEXT).unwrap();
    assert_eq!(bridge.message(), RuntimeMessage::InitOk);
    let meta = br#"{"id":7,"deadline_ms":1700000000000,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","parent_id":null,"depth":0}"#;
    bridge.invoke(7, meta, b"{\"n\":1}");
    let next = read_reply(&mut a);
    assert_eq!(next.status, 200);
    assert_eq!(next.body, b"{\"n\":1}");
    assert_eq!(next.header("Lambda-Runtime-Aws-Request-Id"), Some("7"));
    assert_eq!(
        next.header("Lambda-Runtime-Deadline-Ms"),
        Some("1700000000000")
    );
    assert_eq!(
        next.header("Lambda-Runtime-Invoked-Function-Arn"),
        Some("arn:aws:lambda:eu-west-1:000000000000:function:f")
    );
    assert_eq!(
        next.header("Lambda-Runtime-Trace-Id"),
        Some("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=0000000000000007;Sampled=1")
    );
    assert_eq!(next.header("Content-Type"), Some("application/json"));

    // A long-poll for the next invocation open while the answer is
    // posted on a fresh connection (one per request, as curl does).
    let mut poll = bridge.connect();
    poll.write_all(NEXT).unwrap();
    let mut b = bridge.connect();
    let done = send(
        &mut b,
        &post("invocation/7/response", "Connection: close\r\n", b"\"ok\""),
    );
    assert_eq!(
        (done.status, done.body.as_slice()),
        (202, &br#"{"status":"OK"}"#[..])
    );
    assert_eq!(done.header("Connection"), Some("close"));
    assert!(closed(&mut b));
    assert_eq!(
        bridge.message(),
        RuntimeMessage::Result {
            id: 7,
            body: b"\"ok\"".to_vec()
        }
    );

    // Answered twice: a state error.
    let twice = send(&mut a, &post("invocation/7/response", "", b"1"));
    assert_eq!(twice.status, 403);
    assert!(String::from_utf8_lossy(&twice.body).contains("InvalidStateTransition"));
    // The long-poll gets the next invocation; its answer goes on `a`.
    bridge.invoke(70, &invoke_meta(70, 1), b"{}");
    let polled = read_reply(&mut poll);
    assert_eq!(polled.header("Lambda-Runtime-Aws-Request-Id"), Some("70"));
    assert_eq!(
        send(&mut a, &post("invocation/70/response", "", b"70")).status,
        202
    );
    assert_eq!(
        bridge.message(),
        RuntimeMessage::Result {
            id: 70,
            body: b"70".to_vec()
        }
    );

    // The kept connection asks again; an empty payload arrives as null.
    a.write_all(NEXT).unwrap();
    bridge.no_message();
    bridge.invoke(8, &invoke_meta(8, 1), b"");
    let next = read_reply(&mut a);
    assert_eq!((next.status, next.body.as_slice()), (200, &b"null"[..]));
    let wrong = send(&mut a, &post("invocation/9/response", "", b"1"));
    assert_eq!(wrong.status, 400);
    assert!(String::from_utf8_lossy(&wrong.body).contains("InvalidRequestID"));
    let failed = send(
        &mut a,
        &post(
            "invocation/8/error",
            "Lambda-Runtime-Function-Error-Type: MyError\r\n",
            b"not json",
        ),
    );
    assert_eq!(failed.status, 202);
    let RuntimeMessage::Error { id: 8, body } = bridge.message() else {
        panic!("expected an ERROR for 8")
    };
    let (error_type, message, _) = parse_function_error(&body);
    assert_eq!(
        (error_type.as_str(), message.as_str()),
        ("MyError", "not json")
    );

    // A streamed response whose trailers report an error.
    a.write_all(NEXT).unwrap();
    bridge.invoke(9, &invoke_meta(9, 1), b"{}");
    assert_eq!(read_reply(&mut a).status, 200);
    let streamed = b"POST /2018-06-01/runtime/invocation/9/response HTTP/1.1\r\n\
        Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n\
        Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n\
        5\r\npart1\r\n0\r\nLambda-Runtime-Function-Error-Type: Stream.Failed\r\n\
        Lambda-Runtime-Function-Error-Body: eyJlcnJvclR5cGUiOiJTdHJlYW0uRmFpbGVkIiwiZXJyb3JNZXNzYWdlIjoibWlkIn0=\r\n\r\n";
    assert_eq!(send(&mut a, streamed).status, 202);
    let RuntimeMessage::Error { id: 9, body } = bridge.message() else {
        panic!("expected an ERROR for 9")
    };
    assert_eq!(parse_function_error(&body).1, "mid");

    // A streamed response without error; the body arrives whole.
    a.write_all(NEXT).unwrap();
    bridge.invoke(10, &invoke_meta(10, 1), b"{}");
    assert_eq!(read_reply(&mut a).status, 200);
    let chunks = b"POST /2018-06-01/runtime/invocation/10/response HTTP/1.1\r\n\
        Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n\r\n\
        3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    assert_eq!(send(&mut a, chunks).status, 202);
    assert_eq!(
        bridge.message(),
        RuntimeMessage::Result {
            id: 10,
            body: b"abcde".to_vec()
        }
    );

    let unknown = send(&mut a, b"GET /2018-06-01/runtime/nope HTTP/1.1\r\n\r\n");
    assert_eq!(unknown.status, 404);
    let method = send(
        &mut a,
        b"POST /2018-06-01/runtime/invocation/next HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(method.status, 405);
    let late = send(&mut a, &post("init/error", "", b"{}"));
    assert_eq!(late.status, 403);

    bridge.child.kill().unwrap();
    assert_eq!(bridge.finish(), ExitStatus::Signaled(libc::SIGKILL));
}

#[test]
fn oversized_malformed_and_excess_requests_leave_the_bridge_serving() {
    let mut bridge = Bridge::start(1024, "sleep 30");
    let limit = bridge.host.max_response_body();
    let mut a = bridge.connect();
    a.write_all(NEXT).unwrap();
    assert_eq!(bridge.message(), RuntimeMessage::InitOk);
    bridge.invoke(1, &invoke_meta(1, 1), b"{}");
    assert_eq!(read_reply(&mut a).status, 200);

    // Over the ring's limit: 413, the invocation ends as Lambda ends it.
    let mut big = bridge.connect();
    let head = format!(
        "POST /2018-06-01/runtime/invocation/1/response HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        limit + 1
    );
    let refused = send(&mut big, head.as_bytes());
    assert_eq!(refused.status, 413);
    assert!(String::from_utf8_lossy(&refused.body).contains("RequestEntityTooLarge"));
    let RuntimeMessage::Error { id: 1, body } = bridge.message() else {
        panic!("expected an ERROR for 1")
    };
    assert_eq!(
        parse_function_error(&body).0,
        "Function.ResponseSizeTooLarge"
    );
    // The client sends the body anyway: read and dropped, then closed.
    let _ = big.write_all(&vec![b'x'; limit + 1]);
    assert!(closed(&mut big));

    // Garbage, too many headers, a head too big: 400 and closed.
    let mut many = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', MAX_HEAD + 1));
    for raw in [&b"\x16\x03\x01 hello\r\n\r\n"[..], &many, &huge] {
        let mut c = bridge.connect();
        let _ = c.write_all(raw);
        assert_eq!(read_reply(&mut c).status, 400);
        assert!(closed(&mut c));
    }

    // Connections beyond the limit wait in the backlog until one closes.
    let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS).map(|_| bridge.connect()).collect();
    let mut extra = bridge.connect();
    extra.write_all(NEXT).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(extra.read(&mut byte).is_err(), "served past the limit");
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    drop(a);
    drop(idle);
    bridge.invoke(2, &invoke_meta(2, 1), b"[2]");
    let next = read_reply(&mut extra);
    assert_eq!((next.status, next.body.as_slice()), (200, &b"[2]"[..]));
    assert_eq!(
        send(&mut extra, &post("invocation/2/response", "", b"2")).status,
        202
    );
    assert_eq!(
        bridge.message(),
        RuntimeMessage::Result {
            id: 2,
            body: b"2".to_vec()
        }
    );
}

#[test]
fn http10_expect_continue_and_init_error() {
    let mut bridge = Bridge::start(4096, "sleep 30");
    let mut c = bridge.connect();
    let head = "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nContent-Length: 9\r\n\
        Expect: 100-continue\r\nLambda-Runtime-Function-Error-Type: Runtime.Boom\r\n\r\n";
    c.write_all(head.as_bytes()).unwrap();
    let mut interim = [0u8; 25];
    c.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"bad thing").unwrap();
    assert_eq!(read_reply(&mut c).status, 202);
    let RuntimeMessage::InitError { body } = bridge.message() else {
        panic!("expected INIT_ERROR")
    };
    let (error_type, message, _) = parse_function_error(&body);
    assert_eq!(
        (error_type.as_str(), message.as_str()),
        ("Runtime.Boom", "bad thing")
    );

    let mut old = bridge.connect();
    let refused = send(
        &mut old,
        b"GET /2018-06-01/runtime/invocation/next HTTP/1.0\r\n\r\n",
    );
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("Connection"), Some("close"));
    assert!(closed(&mut old));
    bridge.no_message();
}

#[test]
fn the_bridge_ends_with_the_bootstraps_status() {
    let mut bridge = Bridge::start(4096, "exit 3");
    assert_eq!(bridge.finish(), ExitStatus::Exited(3));
}

#[test]
fn random_garbage_never_stops_the_bridge() {
    let mut bridge = Bridge::start(4096, "sleep 30");
    let fragments: [&[u8]; 9] = [
        b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n",
        b"POST /2018-06-01/runtime/invocation/1/response HTTP/1.1\r\n",
        b"POST /2018-06-01/runtime/invocation/1/error HTTP/1.0\r\n",
        b"Content-Length: ",
        b"Transfer-Encoding: chunked\r\n",
        b"Expect: 100-continue\r\n",
        b"\r\n",
        b"ffffffffffffffff\r\n",
        b"0\r\n\r\n",
    ];
    // xorshift64: the same garbage every run.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..300 {
        let mut raw = Vec::new();
        for _ in 0..random() % 12 {
            match random() % 3 {
                0 => raw.extend((0..random() % 64).map(|_| random() as u8)),
                _ => raw.extend_from_slice(fragments[(random() % 9) as usize]),
            }
        }
        let mut c = bridge.connect();
        let _ = c.write_all(&raw);
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    }
    // Still serving: a valid /next among the garbage may have ended init
    // (and only that can have reached the ring).
    let mut initialised = false;
    while let Some(message) = bridge.host.recv().unwrap() {
        assert_eq!(message, RuntimeMessage::InitOk);
        assert!(!initialised, "INIT_OK twice");
        initialised = true;
    }
    let mut a = bridge.connect();
    a.write_all(NEXT).unwrap();
    if initialised {
        std::thread::sleep(Duration::from_millis(100));
    } else {
        assert_eq!(bridge.message(), RuntimeMessage::InitOk);
    }
    bridge.invoke(5, &invoke_meta(5, 1), b"{}");
    let next = read_reply(&mut a);
    assert_eq!(next.header("Lambda-Runtime-Aws-Request-Id"), Some("5"));
    assert_eq!(
        send(&mut a, &post("invocation/5/response", "", b"5")).status,
        202
    );
    assert_eq!(
        bridge.message(),
        RuntimeMessage::Result {
            id: 5,
            body: b"5".to_vec()
        }
    );
}
