//! Adaptive concurrency: each backend's in-flight limit, found from its own
//! response times, so that by default an overloaded backend is sent only as
//! many requests as it answers without queueing, and the rest wait briefly
//! in the lb's queue or get a fast 503 — instead of every request waiting
//! longer and longer inside the backend (Envoy's adaptive concurrency and
//! Netflix's concurrency-limits do the same).
//!
//! Samples are gathered in windows. When a window closes, its mean response
//! time is compared with the backend's baseline (the lowest window mean
//! seen, allowed to drift up slowly so a backend that became slower for good
//! is re-learned): above `max(TOLERANCE × baseline, FLOOR)` the limit shrinks
//! to what the backend answers within that (Little's law); at or below it, and when the limit was reached in the
//! window, it grows by about its square root. The limit starts at its
//! maximum, so a backend that is never slow is never limited, and the floor
//! keeps fast backends (the lb's own CPU is the bottleneck there) unlimited.
//!
//! A window needs answers to close, and at the onset of a surge a queueing
//! backend answers slowly: by the time a window shows it, the lb has sent
//! it far more than it can answer in time. So a single answer past the
//! threshold, while far more are in flight than any window within the
//! threshold ever had, falls back at once to that proven in-flight level —
//! as TCP falls back to a small window on a timeout — and windows take over
//! from there.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The limit never goes below this many requests in flight.
pub const MIN_LIMIT: u64 = 4;
/// Nor above this; it starts here.
pub const MAX_LIMIT: u64 = 1024;
/// A window closes after this many samples…
const WINDOW_SAMPLES: u64 = 32;
/// …or this long after it opened, whichever is later.
const WINDOW_NS: u64 = 20_000_000;
/// Overloaded: a window's mean past this multiple of the baseline…
const TOLERANCE: f64 = 1.2;
/// …and past this response time (below it, queueing costs too little to
/// refuse anyone for).
const FLOOR: Duration = Duration::from_millis(5);
/// The most one window may cut the limit by (as a factor).
const MAX_CUT: f64 = 0.5;
/// How fast the baseline may rise, per second.
const BASELINE_DRIFT_PER_SEC: f64 = 0.01;

/// One backend's adaptive in-flight limit.
#[derive(Debug)]
pub struct AdaptiveLimit {
    limit: AtomicU64,
    sum_ns: AtomicU64,
    samples: AtomicU64,
    /// The most requests in flight seen in the open window.
    peak_in_flight: AtomicU64,
    /// The last window's threshold in ns; 0 before the first window.
    threshold_ns: AtomicU64,
    /// The most in flight in any window whose mean was within threshold.
    proven_in_flight: AtomicU64,
    state: Mutex<Baseline>,
}

#[derive(Debug, Default)]
struct Baseline {
    /// Lowest window mean, drifting up; 0 before the first window.
    ns: f64,
    /// When the open window began (`clock_ns`).
    window_started: u64,
}

impl Default for AdaptiveLimit {
    fn default() -> Self {
        AdaptiveLimit {
            limit: AtomicU64::new(MAX_LIMIT),
            sum_ns: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            peak_in_flight: AtomicU64::new(0),
            threshold_ns: AtomicU64::new(0),
            proven_in_flight: AtomicU64::new(0),
            state: Mutex::new(Baseline::default()),
        }
    }
}

impl AdaptiveLimit {
    /// Requests this backend may have in flight now: its limit, and for a
    /// backend slow enough to be limited at all, at most twice the most it
    /// has answered in time so far — slow start, so that a surge is not sent
    /// to it in full before its first slow answers can come back.
    pub fn limit(&self) -> u64 {
        let limit = self.limit.load(Ordering::Relaxed);
        if self.threshold_ns.load(Ordering::Relaxed) > FLOOR.as_nanos() as u64 {
            limit.min(2 * self.proven())
        } else {
            limit
        }
    }

    fn proven(&self) -> u64 {
        self.proven_in_flight.load(Ordering::Relaxed).max(MIN_LIMIT)
    }

    /// One answer's response time, with the requests in flight when it came.
    pub fn record(&self, sample: Duration, in_flight: u64, now_ns: u64) {
        let ns = sample.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.peak_in_flight.fetch_max(in_flight, Ordering::Relaxed);
        self.fall_back_on_a_surge(ns, in_flight);
        let n = self.samples.fetch_add(1, Ordering::Relaxed) + 1;
        if n < WINDOW_SAMPLES {
            return;
        }
        // Whoever finds the window full closes it; the others go on.
        let Ok(mut state) = self.state.try_lock() else {
            return;
        };
        let elapsed = now_ns.saturating_sub(state.window_started);
        if elapsed < WINDOW_NS && state.window_started != 0 {
            return;
        }
        let samples = self.samples.swap(0, Ordering::Relaxed);
        let sum = self.sum_ns.swap(0, Ordering::Relaxed);
        let peak = self.peak_in_flight.swap(0, Ordering::Relaxed);
        if samples == 0 {
            return;
        }
        let mean = sum as f64 / samples as f64;
        let first = state.window_started == 0;
        state.window_started = now_ns;
        state.ns = if first || state.ns == 0.0 {
            mean
        } else {
            let drifted = state.ns * (1.0 + BASELINE_DRIFT_PER_SEC * elapsed as f64 / 1e9);
            drifted.min(mean)
        };
        let threshold = (state.ns * TOLERANCE).max(FLOOR.as_nanos() as f64);
        self.threshold_ns.store(threshold as u64, Ordering::Relaxed);
        if mean <= threshold {
            self.proven_in_flight.fetch_max(peak, Ordering::Relaxed);
        }
        let limit = self.limit.load(Ordering::Relaxed);
        let next = if mean > threshold {
            // Little's law: `peak` in flight answered in `mean` each is the
            // backend's rate; `rate × threshold` in flight is what it
            // answers within the threshold. Halved at most per window.
            let used = peak.clamp(1, limit) as f64;
            (used * (threshold / mean).max(MAX_CUT)) as u64
        } else if peak >= limit {
            limit + (limit as f64).sqrt().ceil() as u64
        } else {
            limit
        };
        self.limit
            .store(next.clamp(MIN_LIMIT, MAX_LIMIT), Ordering::Relaxed);
    }

    /// One answer past the threshold with more than twice the proven
    /// in-flight level in flight: the backend is queueing what was sent
    /// since, so the limit drops to that level now. A slow answer at the
    /// usual load (one slow endpoint among fast ones) leaves the limit to the
    /// windows.
    fn fall_back_on_a_surge(&self, ns: u64, in_flight: u64) {
        let threshold = self.threshold_ns.load(Ordering::Relaxed);
        if threshold == 0 || ns <= threshold {
            return;
        }
        let proven = self.proven();
        if in_flight > 2 * proven {
            self.limit.fetch_min(proven, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Feeds `windows` windows of samples at `latency` with `in_flight`
    /// requests in flight, `WINDOW_NS` apart, from `*now` on.
    fn feed(limit: &AdaptiveLimit, now: &mut u64, windows: u64, latency: Duration, in_flight: u64) {
        for _ in 0..windows {
            *now += WINDOW_NS;
            for _ in 0..WINDOW_SAMPLES {
                limit.record(latency, in_flight, *now);
            }
        }
    }

    #[test]
    fn a_fast_backend_is_never_limited() {
        let limit = AdaptiveLimit::default();
        let mut now = MS;
        // Latency ten times its baseline, but under the floor.
        feed(&limit, &mut now, 5, Duration::from_micros(100), 10);
        feed(&limit, &mut now, 50, Duration::from_millis(1), 500);
        assert_eq!(limit.limit(), MAX_LIMIT);
    }

    #[test]
    fn a_backend_slowing_under_load_gets_a_lower_limit_then_grows_back() {
        let limit = AdaptiveLimit::default();
        let mut now = MS;
        feed(&limit, &mut now, 5, Duration::from_millis(2), 8);
        assert_eq!(limit.limit(), MAX_LIMIT);
        // Queueing inside the backend: 40 ms answers.
        feed(&limit, &mut now, 20, Duration::from_millis(40), 300);
        let squeezed = limit.limit();
        assert!(squeezed < 64, "limit {squeezed}");
        assert!(squeezed >= MIN_LIMIT);
        // Load back to normal, requests still reaching the limit: it grows.
        feed(
            &limit,
            &mut now,
            20,
            Duration::from_millis(2),
            squeezed + 100,
        );
        assert!(limit.limit() > squeezed * 2, "limit {}", limit.limit());
    }

    #[test]
    fn a_surge_falls_back_to_the_proven_level_at_the_first_slow_answer() {
        let limit = AdaptiveLimit::default();
        let mut now = MS;
        // Unloaded: 10 ms answers, at most 6 in flight.
        feed(&limit, &mut now, 5, Duration::from_millis(10), 6);
        // Slow start: at most twice that may be sent to it now.
        assert_eq!(limit.limit(), 12);
        // A surge: 60 sent before the first answer past 15 ms comes back.
        limit.record(Duration::from_millis(17), 60, now + MS);
        assert_eq!(limit.limit(), 6);
    }

    #[test]
    fn a_slow_backend_answering_in_time_is_sent_twice_as_much_each_window() {
        let limit = AdaptiveLimit::default();
        let mut now = MS;
        feed(&limit, &mut now, 5, Duration::from_millis(10), 6);
        assert_eq!(limit.limit(), 12);
        feed(&limit, &mut now, 1, Duration::from_millis(10), 12);
        assert_eq!(limit.limit(), 24);
        feed(&limit, &mut now, 1, Duration::from_millis(10), 24);
        assert_eq!(limit.limit(), 48);
    }

    #[test]
    fn a_slow_answer_at_the_usual_load_leaves_the_limit_to_the_windows() {
        let limit = AdaptiveLimit::default();
        let mut now = MS;
        feed(&limit, &mut now, 5, Duration::from_millis(10), 6);
        limit.record(Duration::from_millis(200), 8, now + MS);
        assert_eq!(limit.limit(), 12);
    }

    #[test]
    fn the_limit_does_not_grow_while_unused() {
        let limit = AdaptiveLimit::default();
        let mut now = MS;
        feed(&limit, &mut now, 5, Duration::from_millis(2), 4);
        feed(&limit, &mut now, 20, Duration::from_millis(40), 300);
        let squeezed = limit.limit();
        feed(&limit, &mut now, 20, Duration::from_millis(2), 1);
        assert_eq!(limit.limit(), squeezed);
    }

    #[test]
    fn a_backend_slower_for_good_is_relearned() {
        let limit = AdaptiveLimit::default();
        let mut now = MS;
        feed(&limit, &mut now, 5, Duration::from_millis(2), 4);
        // Now every answer takes 12 ms, at any load: within a few minutes the
        // baseline follows, and the limit climbs back.
        for _ in 0..300 {
            feed(&limit, &mut now, 50, Duration::from_millis(12), MAX_LIMIT);
        }
        assert_eq!(limit.limit(), MAX_LIMIT);
    }
}
