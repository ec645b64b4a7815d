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
