//! Passive health: outlier ejection and the retry budget.
//!
//! A backend that fails requests in a row — connect errors, or `eject_after`
//! 5xx answers — is ejected: no traffic for a while, growing with each
//! ejection (base × 2^(n-1), capped), then it gets traffic again and must
//! behave. Never more than `max_ejection_percent` of the backends are ejected
//! at once (Envoy's cap): when half the fleet "fails", the fault is more
//! likely upstream of it, and ejecting everyone would turn errors into an
//! outage.
//!
//! Retries (on connect failure, where nothing reached the backend) draw on a
//! budget: 20% of requests, with a minimum of a few per second — Envoy's
//! defaults — so a failing fleet is not hit with a retry storm.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backends::clock_ns;
use crate::Backend;

/// Outlier-ejection settings.
#[derive(Clone, Debug)]
pub struct EjectionConfig {
    /// Consecutive 5xx answers that eject a backend (connect errors eject at once).
    pub eject_after: u32,
    /// First ejection's length; doubles with each further ejection.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// Most backends ejected at once, in percent (at least one may always be).
    pub max_ejection_percent: u32,
}

impl Default for EjectionConfig {
    fn default() -> Self {
        EjectionConfig {
            eject_after: 5,
            base_ejection: Duration::from_secs(5),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

/// Records a failed request; ejects the backend when it has failed enough in
/// a row and the cap allows. Returns whether it was ejected now.
pub fn record_failure(
    config: &EjectionConfig,
    backends: &[std::sync::Arc<Backend>],
    backend: &Backend,
    connect: bool,
) -> bool {
    let failures = backend.note_failure();
    if !connect && failures < config.eject_after {
        return false;
    }
    if backend.is_ejected() {
        return false;
    }
    let ejected = backends.iter().filter(|b| b.is_ejected()).count();
    let cap = (backends.len() * config.max_ejection_percent as usize / 100).max(1);
    if backends.len() < 2 || ejected >= cap {
        return false;
    }
    let n = backend.note_ejection();
    let factor = 1u32 << (n.saturating_sub(1)).min(16);
    let length = config
        .base_ejection
        .saturating_mul(factor)
        .min(config.max_ejection);
    backend.eject_for(length);
    tracing::warn!(backend = %backend.id(), ?length, ejections = n, connect, "backend ejected");
    true
}

/// Retries allowed: `percent` of requests in the current one-second window,
/// and at least `min_per_second`.
pub struct RetryBudget {
    percent: u64,
    min_per_second: u64,
    window: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl RetryBudget {
    pub fn new(percent: u64, min_per_second: u64) -> Self {
        RetryBudget {
            percent,
            min_per_second,
            window: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    fn roll(&self) {
        self.roll_at(clock_ns());
    }

    fn roll_at(&self, now: u64) {
        let second = now / 1_000_000_000;
        // Read first: a write on every request would bounce the cache line
        // between cores.
        if self.window.load(Ordering::Relaxed) != second
            && self.window.swap(second, Ordering::Relaxed) != second
        {
            self.requests.store(0, Ordering::Relaxed);
            self.retries.store(0, Ordering::Relaxed);
        }
    }

    /// Counts one request.
    pub fn record_request(&self) {
        self.record_request_at(clock_ns());
    }

    /// [`Self::record_request`] at `now` ([`clock_ns`]).
    pub(crate) fn record_request_at(&self, now: u64) {
        self.roll_at(now);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget if any is left.
    pub fn try_retry(&self) -> bool {
        self.roll();
        let allowed =
            (self.requests.load(Ordering::Relaxed) * self.percent / 100).max(self.min_per_second);
        if self.retries.fetch_add(1, Ordering::Relaxed) < allowed {
            true
        } else {
            self.retries.fetch_sub(1, Ordering::Relaxed);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backends::selection::test_support::backends;

    #[test]
    fn consecutive_5xx_eject_and_success_resets() {
        let b = backends(4);
        let config = EjectionConfig::default();
        for _ in 0..4 {
            assert!(!record_failure(&config, &b, &b[0], false));
        }
        b[0].note_success();
        for _ in 0..4 {
            assert!(!record_failure(&config, &b, &b[0], false));
        }
        assert!(record_failure(&config, &b, &b[0], false));
        assert!(b[0].is_ejected());
    }

    #[test]
    fn never_ejects_more_than_the_cap() {
        let b: Vec<Arc<Backend>> = backends(4);
        let config = EjectionConfig::default();
        assert!(record_failure(&config, &b, &b[0], true));
        assert!(record_failure(&config, &b, &b[1], true));
        // 50% of 4 is 2: the third stays in, however it fails.
        assert!(!record_failure(&config, &b, &b[2], true));
        assert!(!b[2].is_ejected());
        // A single backend is never ejected: there is nowhere else to go.
        let one = backends(1);
        assert!(!record_failure(&config, &one, &one[0], true));
    }

    #[test]
    fn ejections_grow_and_end() {
        let b = backends(2);
        let config = EjectionConfig {
            base_ejection: Duration::from_millis(20),
            ..EjectionConfig::default()
        };
        assert!(record_failure(&config, &b, &b[0], true));
        let first = b[0].ejected_for();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while b[0].is_ejected() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::yield_now();
        }
        assert!(record_failure(&config, &b, &b[0], true));
        assert!(b[0].ejected_for() > first, "second ejection is longer");
    }

    #[test]
    fn a_returning_backend_ramps_up() {
        let b = backends(2);
        let config = EjectionConfig {
            base_ejection: Duration::from_millis(1),
            ..EjectionConfig::default()
        };
        let window = Duration::from_secs(10);
        assert_eq!(b[0].slow_start_share(window), 1.0, "never left: full share");
        assert!(record_failure(&config, &b, &b[0], true));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while b[0].is_ejected() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::yield_now();
        }
        let share = b[0].slow_start_share(window);
        assert!((0.1..0.2).contains(&share), "just back: {share}");
        assert_eq!(b[0].slow_start_share(Duration::from_nanos(1)), 1.0);
    }

    #[test]
    fn retry_budget_is_a_share_of_requests_with_a_floor() {
        let budget = RetryBudget::new(20, 3);
        // Few requests: the floor allows 3.
        assert!((0..3).all(|_| budget.try_retry()));
        assert!(!budget.try_retry());
        for _ in 0..100 {
            budget.record_request();
        }
        // 100 requests allow 20 retries in all (3 already spent) — unless the
        // one-second window rolled over meanwhile, which only resets counts.
        let more = (0..50).filter(|_| budget.try_retry()).count();
        assert!(more <= 20, "{more}");
    }
}
