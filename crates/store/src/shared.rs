//! Small pieces every backend uses the same way.

use chrono::{DateTime, Utc};
use weir_core::{Store, StoreError, TaskChange, TaskId};

/// When a lease taken at `now` runs out.
pub(crate) fn lease_end(now: DateTime<Utc>, lease: std::time::Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

/// Why a change to a task did not apply: it is missing, or in another state.
pub(crate) async fn unchanged(store: &dyn Store, id: TaskId) -> Result<TaskChange, StoreError> {
    Ok(match store.task_get(id).await? {
        Some(t) => TaskChange::WrongState(t.state),
        None => TaskChange::NotFound,
    })
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
