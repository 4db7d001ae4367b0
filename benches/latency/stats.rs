//! Samples and their summaries: percentiles, enough-samples checks, and the
//! noise across repeats.

use std::time::Duration;

use serde_json::{json, Value};

/// The samples of one figure, kept per repeat so the noise across repeats
/// can be stated.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    pub repeats: Vec<Vec<Duration>>,
}

impl Samples {
    pub fn push_repeat(&mut self, samples: Vec<Duration>) {
        if !samples.is_empty() {
            self.repeats.push(samples);
        }
    }

    pub fn all_sorted(&self) -> Vec<Duration> {
        let mut all: Vec<Duration> = self.repeats.iter().flatten().copied().collect();
        all.sort();
        all
    }

    pub fn summary(&self) -> Option<Summary> {
        let all = self.all_sorted();
        if all.is_empty() {
            return None;
        }
        let medians: Vec<f64> = self
            .repeats
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.sort();
                us(quantile(&r, 0.5))
            })
            .collect();
        Some(Summary {
            n: all.len(),
            p50: us(quantile(&all, 0.5)),
            p90: us(quantile(&all, 0.9)),
            p99: us(quantile(&all, 0.99)),
            p999: us(quantile(&all, 0.999)),
            max: us(*all.last().expect("not empty")),
            min_median: medians.iter().copied().fold(f64::INFINITY, f64::min),
            max_median: medians.iter().copied().fold(0.0, f64::max),
            repeats: medians.len(),
        })
    }
}

/// Microseconds.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Nearest-rank quantile of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Percentiles in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// Smallest and largest median of the repeats.
    pub min_median: f64,
    pub max_median: f64,
    pub repeats: usize,
}

impl Summary {
    /// A quantile q is only stated when at least 10 samples lie beyond it.
    pub fn enough_for(&self, q: f64) -> bool {
        (self.n as f64) * (1.0 - q) >= 10.0
    }

    pub fn to_json(self) -> Value {
        json!({
            "n": self.n,
            "p50_us": self.p50,
            "p90_us": self.p90,
            "p99_us": self.p99,
            "p99_enough_samples": self.enough_for(0.99),
            "p999_us": self.p999,
            "p999_enough_samples": self.enough_for(0.999),
            "max_us": self.max,
            "repeats": self.repeats,
            "median_min_us": self.min_median,
            "median_max_us": self.max_median,
        })
    }
}
