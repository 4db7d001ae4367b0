//! How many tenant-neutral sandboxes the pool keeps per shape: a target
//! between a configured min and max that follows the recent rate of cold
//! starts of that shape.
//!
//! The rate is an exponentially weighted moving average of cold starts per
//! second (time constant [`RATE_TAU`]); the pool aims to hold what that
//! rate consumes in [`HORIZON`], roughly the time to boot replacements. A
//! cold start that found the pool empty raises the target by one at once,
//! so a burst is felt before the average catches up. The target falls one
//! step at a time, after [`SHRINK_AFTER`] of lower demand.

use std::time::Duration;

/// Time constant of the cold-start rate average.
pub const RATE_TAU: Duration = Duration::from_secs(10);
/// The pool holds the cold starts expected in this long.
pub const HORIZON: Duration = Duration::from_secs(2);
/// Lower demand must last this long before the target drops by one.
pub const SHRINK_AFTER: Duration = Duration::from_secs(5);
/// Expected cold starts per horizon below this count as none.
const WANT_FLOOR: f64 = 0.1;

/// The pool's bounds per shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    pub min: usize,
    pub max: usize,
}

impl Sizing {
    pub fn new(min: usize, max: usize) -> Sizing {
        Sizing {
            min,
            max: max.max(min),
        }
    }
}

/// The demand for one shape.
#[derive(Debug, Clone)]
pub struct Demand {
    pub target: usize,
    /// Cold starts per second, averaged.
    pub rate: f64,
    /// Cold starts since the last tick.
    recent: u32,
    calm: Duration,
    /// Sandboxes handed to functions from the pool.
    pub taken: u64,
    /// Cold starts that found the pool empty.
    pub misses: u64,
}

impl Demand {
    pub fn new(sizing: Sizing) -> Demand {
        Demand {
            target: sizing.min,
            rate: 0.0,
            recent: 0,
            calm: Duration::ZERO,
            taken: 0,
            misses: 0,
        }
    }

    /// A function took a sandbox of this shape (`from_pool`), or had to
    /// create one because the pool was empty.
    pub fn cold_start(&mut self, from_pool: bool, sizing: Sizing) {
        self.recent += 1;
        if from_pool {
            self.taken += 1;
        } else {
            self.misses += 1;
            self.target = (self.target + 1).min(sizing.max);
            self.calm = Duration::ZERO;
        }
    }

    /// Fold the cold starts of the last `elapsed` into the rate and move
    /// the target.
    pub fn tick(&mut self, elapsed: Duration, sizing: Sizing) {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let alpha = 1.0 - (-secs / RATE_TAU.as_secs_f64()).exp();
        self.rate += alpha * (f64::from(self.recent) / secs - self.rate);
        self.recent = 0;
        // A rate that has all but decayed asks for nothing.
        let expected = self.rate * HORIZON.as_secs_f64() - WANT_FLOOR;
        let wanted = (expected.max(0.0).ceil() as usize).clamp(sizing.min, sizing.max);
        if wanted >= self.target {
            self.target = wanted;
            self.calm = Duration::ZERO;
        } else {
            self.calm += elapsed;
            if self.calm >= SHRINK_AFTER {
                self.target -= 1;
                self.calm = Duration::ZERO;
            }
        }
        self.target = self.target.clamp(sizing.min, sizing.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(250);

    #[test]
    fn misses_raise_the_target_up_to_max() {
        let sizing = Sizing::new(1, 3);
        let mut d = Demand::new(sizing);
        assert_eq!(d.target, 1);
        d.cold_start(true, sizing);
        assert_eq!(d.target, 1, "a pooled cold start is what the pool is for");
        for _ in 0..5 {
            d.cold_start(false, sizing);
        }
        assert_eq!((d.target, d.misses, d.taken), (3, 5, 1));
    }

    #[test]
    fn a_steady_rate_holds_a_target_and_quiet_lowers_it() {
        let sizing = Sizing::new(1, 8);
        let mut d = Demand::new(sizing);
        // 4 cold starts per second for a minute.
        for _ in 0..240 {
            d.cold_start(true, sizing);
            d.tick(TICK, sizing);
        }
        assert!((d.rate - 4.0).abs() < 0.2, "rate {}", d.rate);
        assert_eq!(d.target, 8, "4/s over a 2 s horizon");
        // Then nothing: the target walks back down to min.
        for _ in 0..(4 * 120) {
            d.tick(TICK, sizing);
        }
        assert_eq!(d.target, 1);
        assert!(d.rate < 0.01);
    }

    #[test]
    fn an_empty_pool_learns_from_its_first_miss_and_forgets() {
        let sizing = Sizing::new(0, 4);
        let mut d = Demand::new(sizing);
        assert_eq!(d.target, 0);
        d.cold_start(false, sizing);
        d.tick(TICK, sizing);
        assert_eq!(d.target, 1);
        for _ in 0..(4 * 120) {
            d.tick(TICK, sizing);
        }
        assert_eq!(d.target, 0, "rate {}", d.rate);
    }

    #[test]
    fn bounds_hold() {
        let sizing = Sizing::new(2, 2);
        let mut d = Demand::new(sizing);
        for _ in 0..10 {
            d.cold_start(false, sizing);
            d.tick(TICK, sizing);
        }
        assert_eq!(d.target, 2);
        assert_eq!(Sizing::new(5, 1), Sizing { min: 5, max: 5 });
    }
}
