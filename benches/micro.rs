//! Micro-benchmarks of the pieces on the invocation path, with criterion:
//! the shared-memory ring (an INVOKE pushed and popped, its RESULT pushed
//! and popped, both ends in this process), the wire frames (an invoke
//! request encoded, framed and decoded), and the scheduler's placement
//! decision (enqueue and pair with an idle sandbox).
//!
//! `cargo bench --bench micro`; CI only compiles it.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sprout::protocol::{
    decode_request, encode_request, max_body_for, AffinityMode, FrameDecoder, InvokeRequest,
    Request, MAX_PAYLOAD,
};
use sprout::ring::{invoke_meta, HostRing, RuntimeMessage, RuntimeRing};
use sprout::scheduler::FunctionQueue;

const SIZES: [usize; 3] = [64, 4 << 10, 1 << 20];

fn ring(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring invoke+result round trip");
    let (mut host, end) = HostRing::create(MAX_PAYLOAD).expect("create a ring");
    let mut runtime = RuntimeRing::from_fds(end.memfd, end.request_bell, end.response_bell)
        .expect("map the runtime end");
    let meta = invoke_meta(1, u64::MAX / 2);
    for size in SIZES {
        let payload = vec![7u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, payload| {
            b.iter(|| {
                host.send_invoke(1, &meta, payload).expect("push invoke");
                let invoke = runtime.next_invoke().expect("pop invoke");
                runtime
                    .send_result(invoke.id, &invoke.payload)
                    .expect("push result");
                match host.recv().expect("pop result") {
                    Some(RuntimeMessage::Result { body, .. }) => black_box(body),
                    other => panic!("expected a result, got {other:?}"),
                };
            })
        });
    }
    group.finish();
}

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("invoke frame encode+decode");
    for size in SIZES {
        let request = Request::Invoke(InvokeRequest {
            function: "hello".into(),
            payload: vec![b'x'; size],
            affinity: None,
            traceparent: None,
            caller: Default::default(),
        });
        let mut out = Vec::new();
        let mut decoder = FrameDecoder::new(max_body_for(MAX_PAYLOAD));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &request, |b, request| {
            b.iter(|| {
                out.clear();
                encode_request(42, request, &mut out);
                decoder.feed(&out);
                let frame = decoder.next_frame().expect("a whole frame").expect("valid");
                black_box(decode_request(&frame).expect("decodes"));
            })
        });
    }
    group.finish();
}

fn placement(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler placement");
    for idle in [1usize, 10, 100] {
        let mut queue = FunctionQueue::new(idle, 100, AffinityMode::Shared);
        let now = Instant::now();
        for sandbox in 0..idle as u64 {
            queue.sandbox_starting(sandbox, None);
            queue.sandbox_ready(sandbox, now);
        }
        let mut id = 0u64;
        group.bench_with_input(BenchmarkId::new("idle sandboxes", idle), &idle, |b, _| {
            b.iter(|| {
                id += 1;
                queue.enqueue(id, None).expect("room in the queue");
                let dispatch = queue.next_dispatch().expect("an idle sandbox");
                queue.sandbox_idle(dispatch.sandbox, now);
                black_box(dispatch);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, ring, frames, placement);
criterion_main!(benches);
