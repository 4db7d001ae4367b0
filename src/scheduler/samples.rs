//! A bounded window of recent samples, for percentiles.

use crate::protocol::Percentiles;

/// The last [`Samples::WINDOW`] values recorded.
#[derive(Debug, Default)]
pub struct Samples {
    values: Vec<u64>,
    /// Where the next value goes once the window is full.
    next: usize,
}

impl Samples {
    pub const WINDOW: usize = 1024;

    pub fn record(&mut self, value: u64) {
        if self.values.len() < Self::WINDOW {
            self.values.push(value);
        } else {
            self.values[self.next] = value;
        }
        self.next = (self.next + 1) % Self::WINDOW;
    }

    /// p50, p99 and max of the window (nearest rank); zeros when empty.
    pub fn percentiles(&self) -> Percentiles {
        let mut sorted = self.values.clone();
        sorted.sort_unstable();
        let rank = |p: usize| {
            let n = sorted.len();
            sorted[((n * p).div_ceil(100)).clamp(1, n) - 1]
        };
        if sorted.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: sorted.len() as u64,
            p50: rank(50),
            p99: rank(99),
            max: *sorted.last().expect("not empty"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut s = Samples::default();
        assert_eq!(s.percentiles(), Percentiles::default());
        for v in (1..=100).rev() {
            s.record(v);
        }
        let p = s.percentiles();
        assert_eq!((p.count, p.p50, p.p99, p.max), (100, 50, 99, 100));
        s = Samples::default();
        s.record(7);
        assert_eq!(s.percentiles().p99, 7);
    }

    #[test]
    fn window_keeps_only_the_latest() {
        let mut s = Samples::default();
        for _ in 0..Samples::WINDOW {
            s.record(1_000_000);
        }
        for _ in 0..Samples::WINDOW {
            s.record(5);
        }
        let p = s.percentiles();
        assert_eq!((p.count, p.max), (Samples::WINDOW as u64, 5));
    }
}
