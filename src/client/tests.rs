//! The client's demultiplexing, against a small fake daemon that speaks the
//! protocol over a real Unix socket (the real daemon is tested end to end
//! elsewhere).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use super::*;
use crate::protocol::{
    decode_request, encode_response, ErrorBody, ErrorKind, FrameDecoder, FrameError, FunctionStats,
    ProfileReport, Request, TraceReport,
};

/// A fake daemon serving one connection with `script`.
struct FakeDaemon {
    _dir: tempfile::TempDir,
    path: PathBuf,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeDaemon {
    fn start(script: impl FnOnce(&mut Peer) + Send + 'static) -> FakeDaemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sprout.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let thread = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            script(&mut Peer {
                stream,
                decoder: FrameDecoder::new(1 << 24),
            });
        });
        FakeDaemon {
            _dir: dir,
            path,
            thread: Some(thread),
        }
    }

    /// Wait for the script to finish (it panics into the test on failure).
    fn join(mut self) {
        self.thread.take().unwrap().join().unwrap();
    }
}

struct Peer {
    stream: UnixStream,
    decoder: FrameDecoder,
}

impl Peer {
    /// The next request, `None` at end of stream.
    fn recv(&mut self) -> Option<(u64, Request)> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(frame) = self.decoder.next_frame() {
                let frame = frame.unwrap();
                return Some((frame.request_id, decode_request(&frame).unwrap()));
            }
            let n = self.stream.read(&mut buf).unwrap();
            if n == 0 {
                return None;
            }
            self.decoder.feed(&buf[..n]);
        }
    }

    fn send(&mut self, id: u64, resp: &Response) {
        let mut out = Vec::new();
        encode_response(id, resp, &mut out);
        self.stream.write_all(&out).unwrap();
    }
}

fn echo(id: u64, req: &Request) -> Response {
    let Request::Invoke(inv) = req else {
        panic!("expected an invoke, got {req:?}")
    };
    Response::Invoked(InvokeResponse {
        invocation_id: id,
        result: inv.payload.clone(),
        error: None,
        cold: false,
        sandbox: 1,
        duration_us: 10,
        total_us: 20,
        affinity_hit: false,
    })
}

fn info(name: &str) -> FunctionInfo {
    FunctionInfo {
        name: name.into(),
        version: 1,
        runtime: "python".into(),
        handler: Some("app.handler".into()),
        memory_mb: 128,
        timeout_secs: 3,
        env: BTreeMap::new(),
        code_bytes: 10,
        layer_bytes: vec![],
        ephemeral_storage_mb: 512,
        deployed_at_unix: 1,
        concurrency: 10,
        max_queue: 100,
        idle_timeout_secs: 300,
        affinity_mode: Default::default(),
        prewarm_callees: false,
    }
}

#[test]
fn client_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Client>();
}

#[test]
fn concurrent_invocations_are_answered_out_of_order() {
    const N: usize = 16;
    let daemon = FakeDaemon::start(|peer| {
        let mut pending: Vec<_> = (0..N).map(|_| peer.recv().unwrap()).collect();
        // All N are in flight on one connection; answer newest first.
        pending.reverse();
        for (id, req) in pending {
            peer.send(id, &echo(id, &req));
        }
        assert!(peer.recv().is_none());
    });
    let client = Arc::new(Client::connect(&daemon.path).unwrap());
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let client = Arc::clone(&client);
            thread::spawn(move || {
                let payload = format!("payload {i}");
                let resp = client.invoke("echo", payload.as_bytes()).unwrap();
                assert_eq!(resp.result, payload.as_bytes());
                resp.invocation_id
            })
        })
        .collect();
    let mut ids: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "request ids were reused");
    drop(client);
    daemon.join();
}

#[test]
fn dropped_connection_fails_every_waiter() {
    let daemon = FakeDaemon::start(|peer| {
        let first = peer.recv().unwrap();
        let _second = peer.recv().unwrap();
        let _third = peer.recv().unwrap();
        peer.send(first.0, &echo(first.0, &first.1));
        // Close with two requests in flight.
    });
    let client = Client::connect(&daemon.path).unwrap();
    let results: Vec<_> = thread::scope(|s| {
        let handles: Vec<_> = (0..3u8)
            .map(|i| {
                let client = &client;
                s.spawn(move || (i, client.invoke("f", &[i])))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let answered: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
    assert_eq!(answered.len(), 1, "{results:?}");
    let (i, resp) = answered[0];
    assert_eq!(resp.as_ref().unwrap().result, [*i]);
    let disconnected = results
        .iter()
        .filter(|(_, r)| matches!(r, Err(ClientError::Disconnected)))
        .count();
    assert_eq!(disconnected, 2, "{results:?}");
    // Later calls fail at once rather than hang.
    assert!(matches!(client.list(), Err(ClientError::Disconnected)));
    daemon.join();
}

#[test]
fn control_calls_round_trip_and_remote_errors_are_typed() {
    let daemon = FakeDaemon::start(|peer| {
        while let Some((id, req)) = peer.recv() {
            let resp = match req {
                Request::Deploy(spec) => Response::Deployed(info(&spec.name)),
                Request::List => Response::Functions(vec![info("a"), info("b")]),
                Request::Remove { name } if name == "a" => Response::Removed { name },
                Request::Remove { name } => {
                    Response::Error(ErrorBody::new(ErrorKind::NotFound, format!("no {name}")))
                }
                Request::Invoke(_) => Response::Functions(vec![]),
                Request::Stats { name } => Response::Stats(StatsReport {
                    functions: vec![FunctionStats {
                        name: name.unwrap_or_default(),
                        ..FunctionStats::default()
                    }],
                    ..StatsReport::default()
                }),
                Request::Pretrigger(req) => Response::Pretriggered(PretriggerAccepted {
                    name: req.name,
                    version: 1,
                    count: req.count.min(10),
                    starting: 0,
                    ttl_secs: req.ttl_secs.unwrap_or(60),
                }),
                Request::Trace { invocation_id } => Response::Trace(TraceReport {
                    trace_id: format!("{invocation_id:032x}"),
                    ..TraceReport::default()
                }),
                Request::Profile { name } => Response::Profile(ProfileReport {
                    function: name,
                    count: 3,
                    ..ProfileReport::default()
                }),
            };
            peer.send(id, &resp);
        }
    });
    let client = Client::connect(&daemon.path).unwrap();
    let spec = DeploySpec {
        name: "hello".into(),
        runtime: "python".into(),
        handler: Some("app.handler".into()),
        code: "/srv/hello".into(),
        ..Default::default()
    };
    assert_eq!(client.deploy(&spec).unwrap().name, "hello");
    let names: Vec<_> = client.list().unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(names, ["a", "b"]);
    client.remove("a").unwrap();
    assert_eq!(client.stats(Some("f")).unwrap().functions[0].name, "f");
    let accepted = client.pretrigger("f", 50, Some(5)).unwrap();
    assert_eq!((accepted.count, accepted.ttl_secs), (10, 5));
    assert_eq!(client.trace(42).unwrap().trace_id, format!("{:032x}", 42));
    assert_eq!(client.profile("g").unwrap().count, 3);
    match client.remove("zzz") {
        Err(ClientError::Remote(body)) => {
            assert_eq!(body.kind, ErrorKind::NotFound);
            assert_eq!(body.message, "no zzz");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        client.invoke("f", b""),
        Err(ClientError::Protocol(ProtocolError::UnexpectedResponse {
            sent: "Invoke",
            got: "Functions"
        }))
    ));
    drop(client);
    daemon.join();
}

#[test]
fn oversized_payload_is_refused_without_a_round_trip() {
    let daemon = FakeDaemon::start(|peer| {
        assert!(peer.recv().is_none(), "client sent an oversized payload");
    });
    let client = Client::connect_with_max_payload(&daemon.path, 10).unwrap();
    let err = client.invoke("f", &[0; 11]).unwrap_err();
    assert!(matches!(
        err,
        ClientError::PayloadTooLarge { len: 11, limit: 10 }
    ));
    assert_eq!(err.error_kind(), Some(ErrorKind::TooLarge));
    drop(client);
    daemon.join();
}

#[test]
fn oversized_response_fails_its_caller_and_the_connection_survives() {
    let daemon = FakeDaemon::start(|peer| {
        let (id, _) = peer.recv().unwrap();
        peer.send(
            id,
            &Response::Invoked(InvokeResponse {
                invocation_id: id,
                result: vec![7; 200 * 1024],
                error: None,
                cold: true,
                sandbox: 1,
                duration_us: 1,
                total_us: 1,
                affinity_hit: false,
            }),
        );
        let (id, req) = peer.recv().unwrap();
        peer.send(id, &echo(id, &req));
    });
    let client = Client::connect_with_max_payload(&daemon.path, 1024).unwrap();
    assert!(matches!(
        client.invoke("big", b""),
        Err(ClientError::Protocol(ProtocolError::Frame(
            FrameError::TooLarge { .. }
        )))
    ));
    assert_eq!(client.invoke("small", b"ok").unwrap().result, b"ok");
    drop(client);
    daemon.join();
}

#[test]
fn garbage_from_the_daemon_disconnects() {
    let daemon = FakeDaemon::start(|peer| {
        let _ = peer.recv().unwrap();
        peer.stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\n")
            .unwrap();
        let _ = peer.recv();
    });
    let client = Client::connect(&daemon.path).unwrap();
    assert!(matches!(client.list(), Err(ClientError::Disconnected)));
    drop(client);
    daemon.join();
}

#[test]
fn connect_failure_names_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sock");
    match Client::connect(&path) {
        Err(err @ ClientError::Connect { .. }) => {
            assert!(err.to_string().contains("absent.sock"), "{err}");
        }
        Err(other) => panic!("expected a connect error, got {other:?}"),
        Ok(_) => panic!("connected to a socket that does not exist"),
    }
}
