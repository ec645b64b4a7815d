//! Where the next claim's index walk may start.
//!
//! A claim flips the rows it takes out of the partial index `tasks_claim`,
//! but their index entries stay until a vacuum removes them, and every later
//! claim walks past them from the front of the index. While a backlog drains
//! faster than autovacuum runs, that walk grows with every claim made (a
//! claim behind half a million claimed entries reads thousands of index
//! pages instead of a handful).
//!
//! So a claimer that just took a full batch remembers the last key it took
//! and starts its next walk there (`priority = p AND (run_at, id) > (r, i)`).
//! A task can sort before that key — a higher priority, a released or
//! rescued task, an insert committed late with an earlier `run_at` — so the
//! hint is dropped when this process puts one there, when a walk from it
//! comes back short, and at least every [`FULL_WALK_EVERY`], after which a
//! walk from the front finds whatever the hint skipped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;
use weir_core::TaskInsertParams;

/// How long a hint is trusted before a walk from the front of the index...
pub(super) const FULL_WALK_EVERY: Duration = Duration::from_millis(100);
/// ...or this many times as long as the last such walk took, whichever is
/// longer: a walk past a million dead entries takes tens of milliseconds,
/// and must not take most of a connection's time.
const FULL_WALK_COST_SHARE: u32 = 20;

/// A position in `tasks_claim`, which is ordered by
/// `(priority DESC, run_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ClaimKey {
    pub priority: i32,
    pub run_at: DateTime<Utc>,
    pub id: Uuid,
}

impl ClaimKey {
    /// Where a task about to be inserted will sit.
    pub fn of(p: &TaskInsertParams) -> ClaimKey {
        ClaimKey {
            priority: p.priority,
            run_at: p.run_at,
            id: p.id.0,
        }
    }

    /// True when `self` comes after `other` in the index's order.
    fn after(&self, other: &ClaimKey) -> bool {
        (-(self.priority as i64), self.run_at, self.id)
            > (-(other.priority as i64), other.run_at, other.id)
    }
}

#[derive(Debug, Clone, Copy)]
struct Hint {
    key: ClaimKey,
    since_full_walk: Instant,
    /// How long the hint is trusted.
    trusted_for: Duration,
}

/// The hints of one process, one per claim filter (a claimer that skips
/// some queues or types must not start past rows another filter skipped).
#[derive(Debug, Default)]
pub(super) struct ClaimHints {
    by_filter: Mutex<HashMap<String, Hint>>,
}

impl ClaimHints {
    /// Where a claim with `filter` may start, or None for a full walk.
    pub fn start_for(&self, filter: &str) -> Option<ClaimKey> {
        let hints = self.by_filter.lock().unwrap_or_else(|p| p.into_inner());
        let hint = hints.get(filter)?;
        (hint.since_full_walk.elapsed() < hint.trusted_for).then_some(hint.key)
    }

    /// Records a claim's outcome: `last` is the latest key it took (None when
    /// it took nothing), `full` whether it took as many as it asked for,
    /// `from` the hint it started at (None for a full walk) and `took` how
    /// long the claim took.
    pub fn record(
        &self,
        filter: &str,
        from: Option<ClaimKey>,
        last: Option<ClaimKey>,
        full: bool,
        took: Duration,
    ) {
        let mut hints = self.by_filter.lock().unwrap_or_else(|p| p.into_inner());
        let Some(last) = last.filter(|_| full) else {
            // The front is exhausted (or the hint went stale): walk it next.
            hints.remove(filter);
            return;
        };
        match (from, hints.get_mut(filter)) {
            (Some(_), Some(hint)) => {
                // Concurrent claimers finish out of order: keep the furthest.
                if last.after(&hint.key) {
                    hint.key = last;
                }
            }
            // A hinted walk whose hint was dropped meanwhile: stay dropped.
            (Some(_), None) => {}
            (None, _) => {
                hints.insert(
                    filter.to_owned(),
                    Hint {
                        key: last,
                        since_full_walk: Instant::now(),
                        trusted_for: FULL_WALK_EVERY.max(took * FULL_WALK_COST_SHARE),
                    },
                );
            }
        }
    }

    /// Drops every hint a task at `key` would sort before.
    pub fn task_queued_at(&self, key: &ClaimKey) {
        let mut hints = self.by_filter.lock().unwrap_or_else(|p| p.into_inner());
        hints.retain(|_, hint| key.after(&hint.key));
    }

    /// Drops every hint: tasks went back to the queue at unknown keys.
    pub fn forget_all(&self) {
        self.by_filter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// The latest key among claimed rows, in the index's order.
pub(super) fn latest(keys: impl Iterator<Item = ClaimKey>) -> Option<ClaimKey> {
    keys.reduce(|a, b| if b.after(&a) { b } else { a })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(priority: i32, secs: i64, id: u128) -> ClaimKey {
        ClaimKey {
            priority,
            run_at: DateTime::from_timestamp(secs, 0).unwrap(),
            id: Uuid::from_u128(id),
        }
    }

    #[test]
    fn order_is_the_index_order() {
        assert!(
            key(0, 5, 1).after(&key(1, 9, 9)),
            "lower priority comes later"
        );
        assert!(key(0, 5, 1).after(&key(0, 4, 9)));
        assert!(key(0, 5, 2).after(&key(0, 5, 1)));
        assert!(!key(0, 5, 1).after(&key(0, 5, 1)));
        assert_eq!(
            latest([key(0, 5, 1), key(0, 7, 1), key(2, 9, 1)].into_iter()),
            Some(key(0, 7, 1))
        );
    }

    #[test]
    fn only_a_full_batch_leaves_a_hint() {
        let hints = ClaimHints::default();
        hints.record("f", None, Some(key(0, 5, 1)), false, Duration::ZERO);
        assert_eq!(hints.start_for("f"), None);
        hints.record("f", None, Some(key(0, 5, 1)), true, Duration::ZERO);
        assert_eq!(hints.start_for("f"), Some(key(0, 5, 1)));
        assert_eq!(hints.start_for("other filter"), None);
        // A short hinted walk sends the next claim to the front.
        hints.record(
            "f",
            Some(key(0, 5, 1)),
            Some(key(0, 6, 1)),
            false,
            Duration::ZERO,
        );
        assert_eq!(hints.start_for("f"), None);
    }

    #[test]
    fn hinted_walks_keep_the_furthest_key() {
        let hints = ClaimHints::default();
        hints.record("f", None, Some(key(0, 5, 1)), true, Duration::ZERO);
        hints.record(
            "f",
            Some(key(0, 5, 1)),
            Some(key(0, 9, 1)),
            true,
            Duration::ZERO,
        );
        hints.record(
            "f",
            Some(key(0, 5, 1)),
            Some(key(0, 7, 1)),
            true,
            Duration::ZERO,
        );
        assert_eq!(hints.start_for("f"), Some(key(0, 9, 1)));
    }

    #[test]
    fn a_task_queued_before_the_hint_drops_it() {
        let hints = ClaimHints::default();
        hints.record("f", None, Some(key(0, 5, 1)), true, Duration::ZERO);
        hints.task_queued_at(&key(0, 6, 1));
        assert!(
            hints.start_for("f").is_some(),
            "a later task keeps the hint"
        );
        hints.task_queued_at(&key(3, 60, 1));
        assert_eq!(hints.start_for("f"), None, "a higher priority drops it");
        hints.record("f", None, Some(key(0, 5, 1)), true, Duration::ZERO);
        hints.forget_all();
        assert_eq!(hints.start_for("f"), None);
    }

    #[test]
    fn a_slow_full_walk_is_repeated_less_often() {
        let hints = ClaimHints::default();
        hints.record(
            "f",
            None,
            Some(key(0, 5, 1)),
            true,
            Duration::from_millis(50),
        );
        let hint = hints.by_filter.lock().unwrap()["f"];
        assert_eq!(hint.trusted_for, Duration::from_secs(1));
    }

    #[test]
    fn a_hint_expires_into_a_full_walk() {
        let hints = ClaimHints::default();
        hints.record("f", None, Some(key(0, 5, 1)), true, Duration::ZERO);
        let deadline = Instant::now() + FULL_WALK_EVERY * 20;
        while hints.start_for("f").is_some() {
            assert!(Instant::now() < deadline, "the hint never expired");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
