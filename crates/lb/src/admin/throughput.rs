//! Requests per second over the last minute, for `/lb/stats` and `weir
//! status`. Sampled once a second from the backends' counters, so the proxy's
//! hot path pays nothing for it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the request counters are sampled.
pub const SAMPLE: Duration = Duration::from_secs(1);

/// How far back the rate looks.
pub const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Throughput {
    inner: Mutex<Samples>,
}

#[derive(Debug, Default)]
struct Samples {
    /// The last total seen, to turn totals into increments.
    last_total: Option<u64>,
    /// (when, requests since the previous sample), oldest first.
    increments: VecDeque<(Instant, u64)>,
}

impl Throughput {
    /// Records the requests counted so far. A total that went down (a backend
    /// and its counter removed) counts as no requests, not as negative ones.
    pub fn sample(&self, total: u64, now: Instant) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = s.last_total {
            s.increments.push_back((now, total.saturating_sub(last)));
        }
        s.last_total = Some(total);
        while s
            .increments
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW)
        {
            s.increments.pop_front();
        }
    }

    /// Requests per second over the window (or the time sampled so far, when
    /// shorter); `None` before two samples.
    pub fn per_second(&self, now: Instant) -> Option<f64> {
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (first, _) = *s.increments.front()?;
        let requests: u64 = s.increments.iter().map(|(_, n)| n).sum();
        // Each increment covers about one sampling period before it.
        let span = now.duration_since(first) + SAMPLE;
        Some(requests as f64 / span.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_the_window_ignores_old_samples_and_removed_counters() {
        let t = Throughput::default();
        let start = Instant::now();
        assert_eq!(t.per_second(start), None);
        t.sample(0, start);
        // 100 requests a second for 90 s, then a backend with 500 leaves.
        for s in 1..=90u64 {
            t.sample(s * 100, start + Duration::from_secs(s));
        }
        t.sample(90 * 100 - 500, start + Duration::from_secs(91));
        let now = start + Duration::from_secs(91);
        let rate = t.per_second(now).unwrap();
        // 60 s of 100/s in a 61 s span, plus a second with none.
        assert!((rate - 6000.0 / 61.0).abs() < 2.0, "{rate}");
    }
}
