//! Rate limit for log lines a sandbox can trigger (ring violations, policy
//! kills, failed assignments...): a token bucket shared by all of them, so
//! a hostile runtime cannot flood the daemon's log. A line that gets
//! through reports how many were suppressed before it.
//!
//! ```ignore
//! if let Some(suppressed) = log_limit::admit() {
//!     tracing::warn!(sandbox = id, suppressed, "runtime broke the ring protocol");
//! }
//! ```

use std::cell::RefCell;
use std::time::{Duration, Instant};

/// Lines that may be logged in one burst.
const BURST: u32 = 20;
/// One more line may be logged every this long.
const REFILL: Duration = Duration::from_millis(200);

thread_local! {
    // The daemon runs on one thread: the bucket needs no lock.
    static BUCKET: RefCell<Bucket> = RefCell::new(Bucket::new(Instant::now()));
}

/// `Some(suppressed since the last admitted line)` when a tenant-triggered
/// line may be logged now, `None` when it must be dropped.
pub(super) fn admit() -> Option<u64> {
    BUCKET.with(|b| b.borrow_mut().admit(Instant::now()))
}

#[derive(Debug)]
struct Bucket {
    tokens: u32,
    refilled: Instant,
    suppressed: u64,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket {
            tokens: BURST,
            refilled: now,
            suppressed: 0,
        }
    }

    fn admit(&mut self, now: Instant) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.refilled);
        let earned = (elapsed.as_nanos() / REFILL.as_nanos()).min(u128::from(BURST)) as u32;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(BURST);
            self.refilled = if self.tokens == BURST {
                now
            } else {
                self.refilled + REFILL * earned
            };
        }
        if self.tokens == 0 {
            self.suppressed += 1;
            return None;
        }
        self.tokens -= 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_and_counts_what_it_dropped() {
        let start = Instant::now();
        let mut bucket = Bucket::new(start);
        for _ in 0..BURST {
            assert_eq!(bucket.admit(start), Some(0));
        }
        for _ in 0..1000 {
            assert_eq!(bucket.admit(start), None);
        }
        // Half a refill period earns nothing.
        assert_eq!(bucket.admit(start + REFILL / 2), None);
        // One period later one line passes and reports the drops.
        assert_eq!(bucket.admit(start + REFILL), Some(1001));
        assert_eq!(bucket.admit(start + REFILL), None);
        // A long quiet spell refills the burst, no more.
        let later = start + REFILL * 1000;
        for _ in 0..BURST {
            assert!(bucket.admit(later).is_some());
        }
        assert_eq!(bucket.admit(later), None);
    }

    #[test]
    fn a_flood_is_bounded_by_the_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(start);
        // A million attempts over ten seconds.
        let admitted = (0..1_000_000u64)
            .filter(|i| {
                bucket
                    .admit(start + Duration::from_micros(i * 10))
                    .is_some()
            })
            .count() as u32;
        let ten_s = (Duration::from_secs(10).as_millis() / REFILL.as_millis()) as u32;
        assert!(admitted <= BURST + ten_s, "{admitted}");
        assert!(admitted >= ten_s, "{admitted}");
    }
}
