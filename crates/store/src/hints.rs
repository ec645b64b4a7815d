//! The claim's small rules and memories: lease ends, token buckets, and
//! what it remembers between claims to skip needless round trips.

use chrono::{DateTime, Utc};

/// When a lease taken at `now` runs out.
pub fn lease_end(now: DateTime<Utc>, lease: std::time::Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

/// A rate limit's token bucket after refilling from `refilled_at` to `now`:
/// `rate` tokens a second, holding at most `burst` (default: one second's
/// worth, at least 1). A bucket never refilled starts full.
pub(crate) fn refill(
    tokens: f64,
    refilled_at: Option<DateTime<Utc>>,
    rate: f64,
    burst: Option<i32>,
    now: DateTime<Utc>,
) -> f64 {
    let cap = burst.map_or(rate.max(1.0), |b| f64::from(b.max(1)));
    match refilled_at {
        None => cap,
        Some(at) => {
            let secs = (now - at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
            (tokens + rate * secs.max(0.0)).min(cap)
        }
    }
}

/// The names of queues with limits, re-read at most once a second: the claim
/// query needs them as constants (a list the planner cannot see makes it give
/// up the claim index). A limit set elsewhere applies within a second; one set
/// through this store applies at once.
#[derive(Default)]
pub(crate) struct LimitedQueues {
    cached: std::sync::Mutex<Option<(std::time::Instant, Vec<String>)>>,
}

impl LimitedQueues {
    pub(crate) const TTL: std::time::Duration = std::time::Duration::from_secs(1);

    pub(crate) fn get(&self) -> Option<Vec<String>> {
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some((at, names)) if at.elapsed() < Self::TTL => Some(names.clone()),
            _ => None,
        }
    }

    pub(crate) fn set(&self, names: Vec<String>) {
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), names));
    }

    pub(crate) fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Whether a claim should look for keyed tasks: after a look finds none, the
/// next ones are skipped until a wake-up that may concern keyed tasks (the
/// store's keyed counter moves: a keyed insert, a retry, a workflow step
/// queued here, or such a NOTIFY from elsewhere) or a moment passes, so
/// claims pay no extra round trip while only unkeyed tasks arrive.
#[derive(Default)]
pub(crate) struct KeyedTasksHint {
    /// (keyed wake-up count, when) of the last look that found none.
    none: std::sync::Mutex<Option<(u64, std::time::Instant)>>,
}

impl KeyedTasksHint {
    const PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

    pub(crate) fn worth_looking(&self, keyed_wakes: u64) -> bool {
        let none = self.none.lock().unwrap_or_else(|e| e.into_inner());
        match *none {
            Some((seen, at)) => seen != keyed_wakes || at.elapsed() >= Self::PAUSE,
            None => true,
        }
    }

    pub(crate) fn found_none(&self, keyed_wakes: u64) {
        *self.none.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((keyed_wakes, std::time::Instant::now()));
    }
}

/// Per-queue depths from (queue, state, count) rows ordered by queue.
pub(crate) fn depths_from_rows(rows: Vec<crate::LiveByQueue>) -> Vec<weir_core::QueueDepth> {
    let mut depths: Vec<weir_core::QueueDepth> = Vec::new();
    for crate::LiveByQueue {
        queue,
        state,
        count: n,
        oldest_run_at,
    } in rows
    {
        if depths.last().is_none_or(|d| d.queue != queue) {
            depths.push(weir_core::QueueDepth {
                queue,
                ..Default::default()
            });
        }
        if let Some(d) = depths.last_mut() {
            match state.as_str() {
                "queued" => {
                    d.queued += n;
                    d.oldest_queued_at = oldest_run_at;
                }
                "running" => d.running += n,
                _ => {}
            }
        }
    }
    depths
}
