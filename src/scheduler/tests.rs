use std::time::{Duration, Instant};

use super::member::Waiting;
use super::*;

fn shared(concurrency: usize, max_queue: usize) -> FunctionQueue {
    FunctionQueue::new(concurrency, max_queue, AffinityMode::Shared)
}

fn d(invocation: InvocationId, sandbox: SandboxId, affinity_hit: bool) -> Option<Dispatch> {
    Some(Dispatch {
        invocation,
        sandbox,
        affinity_hit,
    })
}

/// Start `ids` and let them finish their init.
fn ready(q: &mut FunctionQueue, ids: &[SandboxId], now: Instant) {
    for &id in ids {
        q.sandbox_starting(id, None);
        q.sandbox_ready(id, now);
    }
}

#[test]
fn queue_depth_drives_starts_within_concurrency() {
    let now = Instant::now();
    let mut q = shared(3, 10);
    assert_eq!(q.wanted_starts(), 0);
    for i in 0..5 {
        q.enqueue(i, None).unwrap();
    }
    assert_eq!(q.wanted_starts(), 3, "bounded by concurrency");
    q.sandbox_starting(100, None);
    q.sandbox_starting(101, None);
    assert_eq!(q.wanted_starts(), 1);
    q.sandbox_starting(102, None);
    assert_eq!(q.wanted_starts(), 0);
    assert_eq!(q.next_dispatch(), None, "nothing idle yet");

    q.sandbox_ready(100, now);
    assert_eq!(q.next_dispatch(), d(0, 100, false));
    assert_eq!(q.next_dispatch(), None, "busy sandboxes are not pushed to");
    q.sandbox_idle(100, now);
    assert_eq!(q.next_dispatch(), d(1, 100, false));
    assert_eq!((q.queued(), q.peak()), (3, 5));
    assert_eq!((q.live(), q.starting(), q.busy_count()), (3, 2, 1));
}

#[test]
fn full_queue_throttles() {
    let mut q = shared(1, 2);
    q.enqueue(1, None).unwrap();
    q.enqueue(2, Some("k")).unwrap();
    assert_eq!(q.enqueue(3, None), Err(Refused::Throttled { limit: 2 }));
    assert!(q.withdraw(1));
    assert!(!q.withdraw(1));
    q.enqueue(3, None).unwrap();
    assert_eq!(q.drain_pending(), vec![2, 3]);
    assert_eq!(q.queued(), 0);
}

#[test]
fn gone_sandboxes_free_room() {
    let now = Instant::now();
    let mut q = shared(1, 10);
    q.enqueue(1, None).unwrap();
    q.enqueue(2, None).unwrap();
    q.sandbox_starting(7, None);
    assert_eq!(q.wanted_starts(), 0);
    q.sandbox_gone(7);
    assert_eq!((q.live(), q.starting()), (0, 0));
    assert_eq!(q.wanted_starts(), 1);
    ready(&mut q, &[8], now);
    q.sandbox_gone(8);
    assert_eq!(q.next_dispatch(), None);
    assert_eq!(q.live(), 0);
}

#[test]
fn a_key_waits_for_its_busy_sandbox_while_others_idle() {
    let now = Instant::now();
    let mut q = shared(4, 10);
    ready(&mut q, &[10, 11], now);
    q.enqueue(1, Some("a")).unwrap();
    let first = q.next_dispatch().unwrap();
    assert!(!first.affinity_hit, "a new key is a miss");
    let owner = first.sandbox;
    assert!(q.serves_key(owner, "a"));

    q.enqueue(2, Some("a")).unwrap();
    q.enqueue(3, None).unwrap();
    let other = if owner == 10 { 11 } else { 10 };
    assert_eq!(
        q.next_dispatch(),
        d(3, other, false),
        "keyless goes anywhere"
    );
    assert_eq!(q.next_dispatch(), None, "key a waits for its own sandbox");
    assert_eq!(q.wanted_starts(), 0, "a private wait starts nothing");
    q.sandbox_idle(other, now);
    assert_eq!(q.next_dispatch(), None, "still waiting for {owner}");
    q.sandbox_idle(owner, now);
    assert_eq!(q.next_dispatch(), d(2, owner, true));

    // An idle owner takes its key at once.
    q.sandbox_idle(owner, now);
    q.enqueue(4, Some("a")).unwrap();
    assert_eq!(q.next_dispatch(), d(4, owner, true));
}

#[test]
fn a_gone_sandbox_gives_its_waiters_to_anyone() {
    let now = Instant::now();
    let mut q = shared(4, 10);
    ready(&mut q, &[10], now);
    q.enqueue(1, Some("a")).unwrap();
    assert_eq!(q.next_dispatch(), d(1, 10, false));
    q.enqueue(2, Some("a")).unwrap();
    assert_eq!(q.wanted_starts(), 0);
    q.sandbox_gone(10);
    assert_eq!(q.key_count(), 0);
    assert_eq!(
        q.wanted_starts(),
        1,
        "the waiter is back in the shared queue"
    );
    ready(&mut q, &[12], now);
    assert_eq!(q.next_dispatch(), d(2, 12, false));
    assert!(q.serves_key(12, "a"));
}

#[test]
fn same_new_key_twice_lands_on_one_sandbox() {
    let now = Instant::now();
    let mut q = shared(4, 10);
    ready(&mut q, &[10, 11], now);
    q.enqueue(1, Some("a")).unwrap();
    q.enqueue(2, Some("a")).unwrap();
    let first = q.next_dispatch().unwrap();
    assert_eq!(
        q.next_dispatch(),
        None,
        "the second waits for the first's sandbox"
    );
    q.sandbox_idle(first.sandbox, now);
    assert_eq!(q.next_dispatch(), d(2, first.sandbox, true));
}

#[test]
fn strict_dedicates_sandboxes_to_one_key() {
    let now = Instant::now();
    let mut q = FunctionQueue::new(2, 10, AffinityMode::Strict);
    assert_eq!(q.enqueue(1, None), Err(Refused::KeyRequired));
    ready(&mut q, &[10], now);
    q.enqueue(2, Some("a")).unwrap();
    assert_eq!(q.next_dispatch(), d(2, 10, false));
    q.sandbox_idle(10, now);
    q.enqueue(3, Some("b")).unwrap();
    assert_eq!(q.next_dispatch(), None, "a's sandbox never serves b");
    assert_eq!(q.wanted_starts(), 1);
    ready(&mut q, &[11], now);
    assert_eq!(q.next_dispatch(), d(3, 11, false));
    q.sandbox_idle(11, now);

    // At the limit, a third key evicts the least recently used idle one.
    q.enqueue(4, Some("c")).unwrap();
    assert_eq!(q.wanted_starts(), 0);
    assert_eq!(q.evictions(), vec![10]);
    assert_eq!(
        q.evictions(),
        Vec::<SandboxId>::new(),
        "one is already leaving"
    );
    q.sandbox_gone(10);
    assert_eq!(q.wanted_starts(), 1);
    ready(&mut q, &[12], now);
    assert_eq!(q.next_dispatch(), d(4, 12, false));
    q.enqueue(5, Some("b")).unwrap();
    assert_eq!(q.next_dispatch(), d(5, 11, true));
}

#[test]
fn idle_timeout_spares_busy_and_pinned_sandboxes() {
    let t0 = Instant::now();
    let timeout = Duration::from_secs(2);
    let mut q = shared(4, 10);
    ready(&mut q, &[10, 11], t0);
    q.sandbox_starting(12, Some(t0 + Duration::from_secs(10)));
    q.sandbox_ready(12, t0);
    q.enqueue(1, None).unwrap();
    let busy = q.next_dispatch().unwrap().sandbox;
    assert!(q.reapable(t0 + Duration::from_secs(1), timeout).is_empty());
    let mut reaped = q.reapable(t0 + Duration::from_secs(3), timeout);
    reaped.sort_unstable();
    let expected: Vec<SandboxId> = [10, 11].into_iter().filter(|&s| s != busy).collect();
    assert_eq!(reaped, expected, "busy {busy} and pinned 12 stay");
    assert!(q.reapable(t0 + Duration::from_secs(4), timeout).is_empty());
    let later = q.reapable(t0 + Duration::from_secs(11), timeout);
    assert_eq!(later, if busy == 12 { vec![] } else { vec![12] });
    for id in reaped.into_iter().chain(later) {
        q.sandbox_gone(id);
    }
    assert_eq!(q.live(), 1);
}

#[test]
fn pin_counts_live_sandboxes_first() {
    let now = Instant::now();
    let until = now + Duration::from_secs(5);
    let mut q = shared(3, 10);
    ready(&mut q, &[10], now);
    assert_eq!(
        q.pin(5, until),
        2,
        "one live, two more within concurrency 3"
    );
    q.sandbox_starting(11, Some(until));
    q.sandbox_starting(12, Some(until));
    assert_eq!(q.prepared(now), (1, 2));
    q.sandbox_ready(11, now);
    q.sandbox_ready(12, now);
    assert_eq!(q.prepared(now), (3, 0));
    assert_eq!(q.prepared(until), (0, 0), "the pin ends with its ttl");
}

#[test]
fn retire_takes_idle_and_starting_and_requeues_nothing_twice() {
    let now = Instant::now();
    let mut q = shared(4, 10);
    ready(&mut q, &[10, 11], now);
    q.sandbox_starting(12, None);
    q.enqueue(1, None).unwrap();
    let busy = q.next_dispatch().unwrap().sandbox;
    let mut retired = q.retire();
    retired.sort_unstable();
    let expected: Vec<SandboxId> = [10, 11, 12].into_iter().filter(|&s| s != busy).collect();
    assert_eq!(retired, expected);
    assert_eq!(q.starting(), 0);
    for id in retired {
        q.sandbox_gone(id);
    }
    q.sandbox_gone(busy);
    assert_eq!(q.live(), 0);
}

#[test]
fn a_long_queue_of_one_busy_key_is_moved_without_recursion() {
    let now = Instant::now();
    let mut q = shared(2, 200_000);
    ready(&mut q, &[10, 11], now);
    q.enqueue(0, Some("k")).unwrap();
    assert_eq!(q.next_dispatch(), d(0, 11, false));
    // Queued before the key had a sandbox would go to the shared queue;
    // simulate a deep shared queue for a key that now has one.
    for id in 1..=150_000 {
        q.pending.push_back(Waiting {
            id,
            key: Some("k".into()),
        });
        q.queued += 1;
    }
    assert_eq!(q.next_dispatch(), None, "all of them wait for sandbox 11");
    assert_eq!(q.queued(), 150_000);
    q.sandbox_idle(11, now);
    assert_eq!(q.next_dispatch(), d(1, 11, true));
}

#[test]
fn a_shared_function_remembers_a_bounded_number_of_keys() {
    let now = Instant::now();
    let mut q = shared(1, 10);
    ready(&mut q, &[10], now);
    for id in 0..(MAX_KEYS as u64 + 5) {
        q.enqueue(id, Some(&format!("k{id}"))).unwrap();
        assert_eq!(q.next_dispatch().map(|d| d.sandbox), Some(10));
        q.sandbox_idle(10, now);
    }
    assert_eq!(q.key_count(), MAX_KEYS);
    q.enqueue(0, Some("k0")).unwrap();
    assert_eq!(
        q.next_dispatch(),
        d(0, 10, true),
        "an early key is still known"
    );
}
