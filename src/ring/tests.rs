//! Ring tests across both ends: round trips, wrap-around, full rings, every
//! protocol violation a hostile runtime can produce, and two threads
//! exchanging messages over the doorbells.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use super::layout::{self, kind, RecordHeader, HEADER_SIZE, RECORD_HEADER};
use super::*;
use crate::sys::shm::SharedMapping;

fn pair(max_message: usize) -> (HostRing, RuntimeRing) {
    let (host, end) = HostRing::create(max_message).unwrap();
    let runtime = RuntimeRing::from_fds(end.memfd, end.request_bell, end.response_bell).unwrap();
    (host, runtime)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn messages_of_many_sizes_round_trip_both_ways_across_the_wrap() {
    let (mut host, mut runtime) = pair(1000);
    let capacity = host.max_request_body() + RECORD_HEADER;
    assert_eq!(capacity, 8192);
    // Odd sizes so records straddle the end of the ring in every way,
    // including a record header split in two; several laps.
    let mut total = 0;
    for (i, len) in [0usize, 1, 7, 13, 100, 999, 4000, 5000, 8171, 3, 8100, 17]
        .iter()
        .cycle()
        .take(60)
        .enumerate()
    {
        let id = i as u64 + 1;
        let payload = pattern(*len, i as u8);
        let meta = invoke_meta(id, 1234);
        if 4 + meta.len() + len > host.max_request_body() {
            continue;
        }
        host.send_invoke(id, &meta, &payload).unwrap();
        let invoke = runtime.next_invoke().unwrap();
        assert_eq!(invoke.id, id);
        assert_eq!(invoke.deadline_ms, Some(1234));
        assert_eq!(invoke.meta, meta);
        assert_eq!(invoke.payload, payload);

        let body = pattern(*len, !(i as u8));
        runtime.send_result(id, &body).unwrap();
        assert_eq!(
            host.recv().unwrap(),
            Some(RuntimeMessage::Result { id, body })
        );
        assert_eq!(host.recv().unwrap(), None);
        total += len;
    }
    assert!(
        total > 4 * capacity,
        "test should lap the ring several times"
    );
}

#[test]
fn a_maximum_size_message_fits_and_one_byte_more_does_not() {
    let (mut host, mut runtime) = pair(10_000);
    let max = runtime.max_body();
    let body = pattern(max, 9);
    runtime.send_result(1, &body).unwrap();
    assert_eq!(
        host.recv().unwrap(),
        Some(RuntimeMessage::Result { id: 1, body })
    );
    let err = runtime.send_result(2, &vec![0u8; max + 1]).unwrap_err();
    assert!(matches!(err, RingError::TooLarge { len, limit } if len == max + 1 && limit == max));

    let meta = invoke_meta(3, 0);
    let payload = pattern(host.max_request_body() - 4 - meta.len(), 1);
    host.send_invoke(3, &meta, &payload).unwrap();
    assert_eq!(runtime.next_invoke().unwrap().payload, payload);
    let err = host.send_invoke(4, &meta, &[0u8; 1 << 15]).unwrap_err();
    assert!(matches!(err, RingError::TooLarge { .. }));
}

#[test]
fn all_control_messages_decode() {
    let (mut host, mut runtime) = pair(100);
    runtime.send_ready().unwrap();
    runtime.send_init_ok().unwrap();
    runtime.send_init_error(b"{}").unwrap();
    runtime.send_error(7, b"oops").unwrap();
    assert_eq!(host.recv().unwrap(), Some(RuntimeMessage::Ready));
    assert_eq!(host.recv().unwrap(), Some(RuntimeMessage::InitOk));
    assert_eq!(
        host.recv().unwrap(),
        Some(RuntimeMessage::InitError {
            body: b"{}".to_vec()
        })
    );
    assert_eq!(
        host.recv().unwrap(),
        Some(RuntimeMessage::Error {
            id: 7,
            body: b"oops".to_vec()
        })
    );
    assert_eq!(host.recv().unwrap(), None);
}

#[test]
fn a_full_request_ring_says_full_until_the_runtime_drains_it() {
    let (mut host, mut runtime) = pair(100);
    let payload = [1u8; 1000];
    let mut sent = 0u64;
    let err = loop {
        match host.send_invoke(sent, b"", &payload) {
            Ok(()) => sent += 1,
            Err(err) => break err,
        }
    };
    assert!(matches!(err, RingError::Full { needed: 1020, free } if free < 1020));
    assert_eq!(sent, 8192 / 1020);
    assert_eq!(runtime.next_invoke().unwrap().id, 0);
    host.send_invoke(sent, b"", &payload).unwrap();
}

#[test]
fn a_reopened_runtime_end_continues_where_the_last_left_off() {
    // The sandbox init sends READY, then execs the bootstrap, which maps
    // the ring again: indices must carry over.
    let (mut host, end) = HostRing::create(100).unwrap();
    let memfd2 = end.memfd.try_clone().unwrap();
    let req2 = end.request_bell.try_clone().unwrap();
    let resp2 = end.response_bell.try_clone().unwrap();
    let mut init = RuntimeRing::from_fds(end.memfd, end.request_bell, end.response_bell).unwrap();
    init.send_ready().unwrap();
    host.send_invoke(5, b"", b"early").unwrap();
    drop(init);
    let mut bootstrap = RuntimeRing::from_fds(memfd2, req2, resp2).unwrap();
    bootstrap.send_init_ok().unwrap();
    assert_eq!(bootstrap.next_invoke().unwrap().payload, b"early");
    assert_eq!(host.recv().unwrap(), Some(RuntimeMessage::Ready));
    assert_eq!(host.recv().unwrap(), Some(RuntimeMessage::InitOk));
}

/// A hostile runtime: its own mapping of the ring, written by hand.
struct Hostile {
    map: SharedMapping,
    data: usize,
    capacity: usize,
}

impl Hostile {
    fn new(max_message: usize) -> (HostRing, Hostile) {
        let (host, end) = HostRing::create(max_message).unwrap();
        let size = crate::sys::shm::file_size(end.memfd.as_fd()).unwrap();
        let map = SharedMapping::map(end.memfd.as_fd(), size).unwrap();
        let capacity = host.max_response_body() + RECORD_HEADER;
        let hostile = Hostile {
            map,
            data: HEADER_SIZE + capacity,
            capacity,
        };
        (host, hostile)
    }

    fn write_record(&self, pos: u64, header: RecordHeader) {
        let off = pos as usize & (self.capacity - 1);
        self.map.copy_in(self.data + off, &header.encode()).unwrap();
    }

    fn publish(&self, tail: u64) {
        self.map
            .atomic_u64(layout::OFF_RESPONSE_TAIL)
            .store(tail, Ordering::Release);
    }
}

fn assert_violation(host: &mut HostRing, needle: &str) {
    match host.recv() {
        Err(RingError::Violation { reason }) => assert!(reason.contains(needle), "{reason}"),
        other => panic!("expected a violation mentioning {needle:?}, got {other:?}"),
    }
}

#[test]
fn tail_past_head_plus_capacity_is_a_violation() {
    let (mut host, bad) = Hostile::new(100);
    bad.publish(bad.capacity as u64 + 1);
    assert_violation(&mut host, "past head");
    // Wrapped "backwards" tail (tail < head as u64) is the same violation.
    let (mut host, bad) = Hostile::new(100);
    bad.publish(u64::MAX);
    assert_violation(&mut host, "past head");
}

#[test]
fn record_length_past_the_published_bytes_is_a_violation() {
    let (mut host, bad) = Hostile::new(100);
    bad.write_record(
        0,
        RecordHeader {
            len: 100,
            kind: kind::RESULT,
            flags: 0,
            id: 1,
        },
    );
    bad.publish(RECORD_HEADER as u64 + 50);
    assert_violation(&mut host, "runs past");
}

#[test]
fn record_length_over_the_limit_is_a_violation() {
    let (mut host, bad) = Hostile::new(100);
    bad.write_record(
        0,
        RecordHeader {
            len: u32::MAX,
            kind: kind::RESULT,
            flags: 0,
            id: 1,
        },
    );
    bad.publish(bad.capacity as u64);
    assert_violation(&mut host, "over the limit");
}

#[test]
fn unknown_message_type_is_a_violation() {
    for bad_kind in [0u16, 7, kind::INVOKE, u16::MAX] {
        let (mut host, bad) = Hostile::new(100);
        bad.write_record(
            0,
            RecordHeader {
                len: 0,
                kind: bad_kind,
                flags: 0,
                id: 1,
            },
        );
        bad.publish(RECORD_HEADER as u64);
        assert_violation(&mut host, "unknown message type");
    }
}

#[test]
fn truncated_record_header_is_a_violation() {
    let (mut host, bad) = Hostile::new(100);
    bad.publish(RECORD_HEADER as u64 - 1);
    assert_violation(&mut host, "truncated");
}

#[test]
fn a_runtime_moving_its_head_past_the_tail_breaks_the_request_ring() {
    let (mut host, bad) = Hostile::new(100);
    host.send_invoke(1, b"", b"x").unwrap();
    bad.map
        .atomic_u64(layout::OFF_REQUEST_HEAD)
        .store(1000, Ordering::Release);
    match host.send_invoke(2, b"", b"y") {
        Err(RingError::Violation { reason }) => assert!(reason.contains("behind tail"), "{reason}"),
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn random_garbage_never_panics_the_host() {
    // A cheap xorshift; every outcome must be Ok or an error, never a panic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..200 {
        let (mut host, bad) = Hostile::new(100);
        for off in (0..bad.capacity).step_by(8) {
            bad.map
                .copy_in(bad.data + off, &next().to_le_bytes())
                .unwrap();
        }
        bad.publish(next() % (2 * bad.capacity as u64));
        for _ in 0..4 {
            let _ = host.recv();
        }
    }
}

#[test]
fn a_runtime_in_another_thread_answers_through_the_doorbells() {
    let (mut host, end) = HostRing::create(4096).unwrap();
    let runtime = std::thread::spawn(move || {
        let mut ring =
            RuntimeRing::from_fds(end.memfd, end.request_bell, end.response_bell).unwrap();
        ring.send_ready().unwrap();
        loop {
            let invoke = ring.next_invoke().unwrap();
            if invoke.payload == b"stop" {
                return;
            }
            let mut answer = invoke.payload.clone();
            answer.reverse();
            ring.send_result(invoke.id, &answer).unwrap();
        }
    });
    let bell = host.response_bell();
    let wait = |host: &mut HostRing| loop {
        if let Some(message) = host.recv().unwrap() {
            return message;
        }
        let mut fds = [nix::poll::PollFd::new(
            bell.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16)).unwrap();
        assert_eq!(n, 1, "response bell never rang");
        let mut buf = [0u8; 8];
        nix::unistd::read(&*bell, &mut buf).unwrap();
    };
    assert_eq!(wait(&mut host), RuntimeMessage::Ready);
    for id in 1..=500u64 {
        let payload = pattern((id * 37 % 3000) as usize, id as u8);
        host.send_invoke(id, &invoke_meta(id, 0), &payload).unwrap();
        let mut want = payload;
        want.reverse();
        assert_eq!(wait(&mut host), RuntimeMessage::Result { id, body: want });
    }
    host.send_invoke(0, b"", b"stop").unwrap();
    runtime.join().unwrap();
}
