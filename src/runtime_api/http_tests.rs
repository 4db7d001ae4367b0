use super::*;

const LIMITS: Limits = Limits {
    max_head: 1024,
    max_headers: 8,
    max_body: 64,
};

fn reader() -> Reader {
    Reader::new(LIMITS)
}

fn request(event: Option<Event>) -> Request {
    match event {
        Some(Event::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

#[test]
fn content_length_request_and_pipelined_next() {
    let mut r = reader();
    r.feed(
        b"POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n",
    );
    let first = request(r.next().unwrap());
    assert_eq!(first.head.method, Method::Post);
    assert_eq!(first.head.path, "/a");
    assert_eq!(first.body, b"hello");
    assert!(first.head.keep_alive);
    assert_eq!(first.head.header("host"), Some("h"));
    let second = request(r.next().unwrap());
    assert_eq!(
        (second.head.method, second.head.path.as_str()),
        (Method::Get, "/b")
    );
    assert!(second.body.is_empty());
    assert_eq!(r.next().unwrap(), None);
    assert_eq!(r.buffered(), 0);
}

#[test]
fn a_request_split_across_every_byte_boundary() {
    let raw: &[u8] =
        b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nLambda-Runtime-Function-Error-Type: E\r\n\r\nabc";
    for split in 1..raw.len() {
        let mut r = reader();
        r.feed(&raw[..split]);
        let early = r.next().unwrap();
        assert_eq!(early, None, "split at {split}");
        r.feed(&raw[split..]);
        let req = request(r.next().unwrap());
        assert_eq!(req.body, b"abc", "split at {split}");
        assert_eq!(
            req.head.header("lambda-runtime-function-error-type"),
            Some("E")
        );
    }
}

#[test]
fn a_long_head_trickled_byte_by_byte_parses_once_complete() {
    let mut r = Reader::new(Limits {
        max_head: 64 * 1024,
        ..LIMITS
    });
    let mut raw = b"GET /n HTTP/1.1\r\nX-Long: ".to_vec();
    raw.extend(std::iter::repeat_n(b'v', 20_000));
    raw.extend_from_slice(b"\r\n\r\n");
    let (last, most) = raw.split_last().unwrap();
    for byte in most {
        r.feed(std::slice::from_ref(byte));
        assert_eq!(r.next().unwrap(), None);
    }
    r.feed(std::slice::from_ref(last));
    let req = request(r.next().unwrap());
    assert_eq!(req.head.header("x-long").map(str::len), Some(20_000));
}

#[test]
fn chunked_body_with_trailers_byte_by_byte() {
    let raw: &[u8] = b"POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTrailer: Lambda-Runtime-Function-Error-Type\r\n\r\n\
        4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nLambda-Runtime-Function-Error-Type: Boom\r\n\r\n";
    let mut r = reader();
    let mut got = None;
    for byte in raw {
        r.feed(std::slice::from_ref(byte));
        if let Some(event) = r.next().unwrap() {
            assert!(got.is_none());
            got = Some(event);
        }
    }
    let req = request(got);
    assert_eq!(req.body, b"Wikipedia");
    assert_eq!(
        header(&req.trailers, "lambda-runtime-function-error-type"),
        Some("Boom")
    );
}

#[test]
fn chunked_body_without_trailers() {
    let mut r = reader();
    r.feed(b"POST /r HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    let req = request(r.next().unwrap());
    assert_eq!(req.body, b"abc");
    assert!(req.trailers.is_empty());
}

#[test]
fn oversized_bodies_are_too_large() {
    let mut r = reader();
    r.feed(b"POST /r HTTP/1.1\r\nContent-Length: 65\r\n\r\n");
    assert!(matches!(r.next().unwrap(), Some(Event::TooLarge(h)) if h.path == "/r"));

    let mut r = reader();
    r.feed(b"POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n");
    r.feed(&[b'a'; 64]);
    r.feed(b"\r\n1\r\n");
    assert!(matches!(r.next().unwrap(), Some(Event::TooLarge(_))));

    let mut r = reader();
    r.feed(b"POST /r HTTP/1.1\r\nContent-Length: 64\r\n\r\n");
    r.feed(&[b'a'; 64]);
    assert_eq!(request(r.next().unwrap()).body.len(), 64);
}

#[test]
fn expect_continue_is_reported_once_before_the_body() {
    let mut r = reader();
    r.feed(b"POST /r HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(r.next().unwrap(), Some(Event::Continue));
    assert_eq!(r.next().unwrap(), None);
    r.feed(b"ok");
    assert_eq!(request(r.next().unwrap()).body, b"ok");
}

#[test]
fn heads_are_bounded_in_size_and_count() {
    let mut r = reader();
    r.feed(b"GET / HTTP/1.1\r\nX: ");
    r.feed(&[b'a'; 1100]);
    assert_eq!(r.next(), Err(HttpError::HeadTooLarge(1024)));

    let mut r = reader();
    let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..9 {
        raw.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    r.feed(&raw);
    assert_eq!(
        r.next(),
        Err(HttpError::Parse(httparse::Error::TooManyHeaders))
    );
}

#[test]
fn garbage_and_smuggling_are_refused() {
    for raw in [
        &b"\x00\x01\x02 garbage\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
    ] {
        let mut r = reader();
        r.feed(raw);
        assert!(r.next().is_err(), "{}", String::from_utf8_lossy(raw));
    }
    let mut r = reader();
    r.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    r.feed(&[b'1'; 2000]);
    assert_eq!(r.next(), Err(HttpError::Chunk));
}

#[test]
fn http10_and_connection_close_do_not_keep_alive() {
    for (raw, keep) in [
        (&b"GET / HTTP/1.0\r\n\r\n"[..], false),
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", true),
    ] {
        let mut r = reader();
        r.feed(raw);
        assert_eq!(request(r.next().unwrap()).head.keep_alive, keep);
    }
    let mut r = reader();
    r.feed(b"DELETE / HTTP/1.1\r\n\r\n");
    assert_eq!(request(r.next().unwrap()).head.method, Method::Other);
}

#[test]
fn answers_are_one_buffer() {
    let mut answer = Answer::accepted();
    answer
        .headers
        .push(("Lambda-Runtime-Aws-Request-Id", "7".into()));
    let bytes = String::from_utf8(answer.encode(true)).unwrap();
    assert_eq!(
        bytes,
        "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\
         Lambda-Runtime-Aws-Request-Id: 7\r\nConnection: close\r\n\r\n{\"status\":\"OK\"}"
    );
    let error = Answer::error(400, "InvalidRequestID", "Invalid request ID");
    let text = String::from_utf8(error.encode(false)).unwrap();
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.ends_with(
        "\r\n\r\n{\"errorMessage\":\"Invalid request ID\",\"errorType\":\"InvalidRequestID\"}"
    ));
    assert!(header_safe("Root=1-a;Parent=b\t"));
    assert!(!header_safe("a\r\nInjected: yes"));
}
