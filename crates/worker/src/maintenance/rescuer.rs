//! The rescuer: tasks whose lease expired (their worker crashed or hung) go back
//! to the queue, or to `dead` when they have no attempts left.

use std::sync::Arc;

use chrono::Utc;
use weir_core::{TaskQueue, TaskRescueParams};

/// One rescue pass; returns how many tasks were taken back. Errors are logged:
/// the next pass tries again.
pub async fn rescue_once(store: &Arc<dyn TaskQueue>) -> u64 {
    match store
        .task_rescue_expired(TaskRescueParams { now: Utc::now() })
        .await
    {
        Ok(0) => 0,
        Ok(n) => {
            tracing::warn!(tasks = n, "rescued tasks whose lease expired");
            n
        }
        Err(e) => {
            tracing::warn!(error = %e, "rescue pass failed");
            0
        }
    }
}
