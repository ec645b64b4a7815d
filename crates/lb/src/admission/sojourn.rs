//! Whether the wait queue is standing, judged by how long requests wait in
//! it (CoDel's sojourn time): once the queue has overflowed and most
//! requests of an interval waited past the target, it does not drain by
//! itself and only adds latency, so waits are cut short and the excess
//! refused now — until an interval where most waits were short again. An
//! overflow is needed to start: a closed set of clients (a pool, a
//! benchmark's connections) can never fill the queue, and refusing them
//! would not lower the load they bring, only fail their requests. A queue that
//! fills and empties in turn — clients retrying at once after a 503 — stands
//! as much as one that never empties; counting "time since the queue was
//! last empty" would miss it. Most, not all (CoDel takes the shortest
//! wait): a freed slot goes to whichever waiter reserves it first, so under
//! churn a request that has just arrived is often served at once while the
//! others wait on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The interval over which the shortest wait is taken…
const INTERVAL: Duration = Duration::from_millis(100);
/// …and the wait that, if even the shortest exceeded it, means standing.
pub const TARGET: Duration = Duration::from_millis(5);

/// Queue waits, gathered per interval.
#[derive(Debug, Default)]
pub struct Sojourn {
    /// When the current interval began (`clock_ns`); 0: none yet.
    interval_start: AtomicU64,
    /// Waits in the current interval: all of them, and those past the target.
    waits: AtomicU64,
    long_waits: AtomicU64,
    /// The verdict on the last interval that saw waits.
    standing: AtomicBool,
    /// The queue was full in the current interval.
    overflowed: AtomicBool,
}

impl Sojourn {
    /// Notes one request's wait in the queue, ended (slot or refusal) at
    /// `now_ns`; true when this made the queue stand.
    pub fn record(&self, waited: Duration, now_ns: u64) -> bool {
        let waited = waited.as_nanos().min(u128::from(u64::MAX)) as u64;
        let start = self.interval_start.load(Ordering::Relaxed);
        if start == 0 || now_ns.saturating_sub(start) >= INTERVAL.as_nanos() as u64 {
            // One caller closes the interval; a racing one just records.
            if self
                .interval_start
                .compare_exchange(start, now_ns, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let long = u64::from(waited > TARGET.as_nanos() as u64);
                let waits = self.waits.swap(1, Ordering::AcqRel);
                let long_waits = self.long_waits.swap(long, Ordering::AcqRel);
                let closed_one =
                    start != 0 && now_ns.saturating_sub(start) < 2 * INTERVAL.as_nanos() as u64;
                let overflowed = self.overflowed.swap(false, Ordering::AcqRel);
                let was = self.standing.load(Ordering::Relaxed);
                let stands = closed_one && (was || overflowed) && long_waits * 2 > waits;
                self.standing.store(stands, Ordering::Relaxed);
                return stands && !was;
            }
        }
        self.waits.fetch_add(1, Ordering::AcqRel);
        if waited > TARGET.as_nanos() as u64 {
            self.long_waits.fetch_add(1, Ordering::AcqRel);
        }
        false
    }

    /// Notes a request refused because the queue was full: arrivals outrun
    /// service, so the queue stands from now on, until an interval's waits
    /// say otherwise — waiting for the interval would admit a full queue's
    /// worth of long waits at the onset of every surge.
    /// True when this made the queue stand.
    pub fn overflow(&self) -> bool {
        self.overflowed.store(true, Ordering::Relaxed);
        !self.standing.swap(true, Ordering::Relaxed)
    }

    /// Whether the queue stands now: most waits of the last interval were
    /// past the target, and that interval is recent.
    pub fn standing(&self, now_ns: u64) -> bool {
        let start = self.interval_start.load(Ordering::Relaxed);
        self.standing.load(Ordering::Relaxed)
            && now_ns.saturating_sub(start) < 2 * INTERVAL.as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Ten waits of `each` spread over one interval from `from`, then the
    /// first wait of the next, which closes it.
    fn interval(s: &Sojourn, from: u64, each: Duration) {
        for t in 0..10 {
            s.record(each, from + t * 9 * MS);
        }
        s.record(each, from + 100 * MS);
    }

    #[test]
    fn a_queue_stands_after_an_overflow_while_most_waits_are_long() {
        let s = Sojourn::default();
        // Long waits without an overflow: a closed set of clients.
        interval(&s, MS, Duration::from_millis(50));
        assert!(!s.standing(102 * MS), "stands without an overflow");
        // The queue overflowed and every request waited 50 ms (though it
        // may have emptied between them).
        s.overflow();
        interval(&s, 101 * MS, Duration::from_millis(50));
        assert!(s.standing(202 * MS));
        // It keeps standing while most waits stay long, overflow or not.
        interval(&s, 201 * MS, Duration::from_millis(50));
        assert!(s.standing(302 * MS));
        // Most waits short: drained, no longer standing.
        s.record(Duration::from_millis(40), 305 * MS);
        interval(&s, 310 * MS, Duration::from_micros(200));
        assert!(!s.standing(411 * MS));
        // Long after the last wait, an old verdict no longer holds.
        s.overflow();
        interval(&s, 420 * MS, Duration::from_millis(50));
        assert!(s.standing(521 * MS));
        assert!(!s.standing(900 * MS));
    }

    #[test]
    fn an_overflow_makes_the_queue_stand_at_once() {
        let s = Sojourn::default();
        interval(&s, MS, Duration::from_micros(200));
        assert!(!s.standing(102 * MS));
        s.overflow();
        assert!(s.standing(103 * MS));
        // The interval it happened in decides whether it goes on standing.
        interval(&s, 101 * MS, Duration::from_micros(200));
        assert!(!s.standing(202 * MS));
    }
}
