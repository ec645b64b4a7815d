//! Latency summaries.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// p50/p90/p99/p99.9/max of a set of latencies, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Summarises latencies (microsecond resolution, up to an hour).
    pub fn from_durations(samples: impl IntoIterator<Item = Duration>) -> Latency {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        for d in samples {
            h.saturating_record((d.as_micros() as u64).max(1));
        }
        Latency::from_histogram(&h)
    }

    /// Summarises a histogram of microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms (n={})",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_spread() {
        let l = Latency::from_durations((1..=100).map(Duration::from_millis));
        assert_eq!(l.count, 100);
        assert!((l.p50_ms - 50.0).abs() < 0.5, "{l}");
        assert!((l.p99_ms - 99.0).abs() < 0.5, "{l}");
        assert!((l.max_ms - 100.0).abs() < 0.5, "{l}");
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(Latency::from_durations([]).count, 0);
    }
}
