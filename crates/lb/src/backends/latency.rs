//! A lock-free latency histogram for per-backend p50/p99.
//!
//! Every proxied request records one sample, so recording must not take a
//! lock: buckets are atomics on a log scale (four per power of two, from 1 µs
//! to ~70 min), which bounds the error of any quantile to about ±9%.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets per power of two.
const SUB: u32 = 4;
/// Powers of two covered (1 µs · 2^32 ≈ 71 min).
const POWERS: u32 = 32;
const BUCKETS: usize = (SUB * POWERS) as usize + 1;

pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    /// Sum of all samples, in microseconds (for Prometheus' `_sum`).
    sum_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count())
            .finish()
    }
}

fn bucket_of(us: u64) -> usize {
    if us <= 1 {
        return 0;
    }
    let log2 = 63 - us.leading_zeros();
    // The next bits below the leading one pick the sub-bucket.
    let frac = if log2 >= 2 {
        (us >> (log2 - 2)) & 0b11
    } else {
        (us << (2 - log2)) & 0b11
    };
    ((log2 * SUB) as usize + frac as usize).min(BUCKETS - 1)
}

/// The upper edge of a bucket, in microseconds.
fn bucket_upper(i: usize) -> f64 {
    let (log2, frac) = ((i as u32) / SUB, (i as u32) % SUB);
    2f64.powi(log2 as i32) * (1.0 + f64::from(frac + 1) / f64::from(SUB))
}

impl LatencyHistogram {
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Sum of all samples.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us.load(Ordering::Relaxed))
    }

    /// For each bound (seconds, ascending), how many samples were at most
    /// that long — Prometheus' cumulative `le` buckets. A sample counts
    /// under a bound when its whole bucket does, so counts lean low by at
    /// most one bucket's width (~25%).
    pub fn cumulative(&self, bounds: &[f64]) -> Vec<u64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        bounds
            .iter()
            .map(|bound| {
                let bound_us = bound * 1e6;
                counts
                    .iter()
                    .enumerate()
                    .take_while(|(i, _)| bucket_upper(*i) <= bound_us)
                    .map(|(_, c)| c)
                    .sum()
            })
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The `q` quantile (0..=1), or `None` before the first sample.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos((bucket_upper(i) * 1000.0) as u64));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_bucket_error() {
        let h = LatencyHistogram::default();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).unwrap().as_secs_f64() * 1000.0;
        let p99 = h.quantile(0.99).unwrap().as_secs_f64() * 1000.0;
        assert!((p50 - 500.0).abs() / 500.0 < 0.2, "p50 {p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.2, "p99 {p99}");
        assert_eq!(h.count(), 1000);
    }

    #[test]
    fn cumulative_counts_follow_the_bounds() {
        let h = LatencyHistogram::default();
        for ms in [1u64, 2, 3, 40, 900] {
            h.record(Duration::from_millis(ms));
        }
        // 1 ms and 2 ms are under 5 ms; 3 ms falls in a bucket reaching past
        // 2.5 ms; everything is under 1 s.
        assert_eq!(h.cumulative(&[0.0025, 0.005, 0.05, 1.0]), vec![2, 3, 4, 5]);
        assert_eq!(h.sum(), Duration::from_millis(946));
    }

    #[test]
    fn buckets_are_monotonic() {
        let mut last = 0;
        for us in 0..100_000u64 {
            let b = bucket_of(us);
            assert!(b >= last, "{us}");
            assert!(bucket_upper(b) >= us as f64, "{us} above its bucket");
            last = b;
        }
        assert!(LatencyHistogram::default().quantile(0.5).is_none());
    }
}
