//! `GET /workers`: the worker registry.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use weir_core::{Store, StoreError, WorkerStatus};

use crate::schema::WorkerList;
use crate::{ApiError, AppState};

#[utoipa::path(get, path = "/workers", tag = "workers",
    responses((status = 200, description = "Every worker that has reported, with its status", body = WorkerList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<WorkerList>, ApiError> {
    let list = worker_list(
        state.store.as_ref(),
        state.config.worker_offline_after,
        Utc::now(),
    )
    .await?;
    Ok(Json(list))
}

/// Every worker, shown offline when silent longer than `offline_after`;
/// shared with `weir status --database-url`.
pub async fn worker_list(
    store: &dyn Store,
    offline_after: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<WorkerList, StoreError> {
    let mut workers = store.worker_list().await?;
    let offline_after = chrono::Duration::from_std(offline_after).unwrap_or(chrono::Duration::MAX);
    for w in &mut workers {
        // A crashed worker cannot say it is offline; its silence does.
        if now - w.last_heartbeat_at > offline_after {
            w.status = WorkerStatus::Offline;
            w.active_tasks = 0;
            w.current_task = None;
        }
    }
    Ok(WorkerList { workers })
}
