//! `GET /workers`: the worker registry.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use weir_core::WorkerStatus;

use crate::schema::WorkerList;
use crate::{ApiError, AppState};

#[utoipa::path(get, path = "/workers", tag = "workers",
    responses((status = 200, description = "Every worker that has reported, with its status", body = WorkerList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<WorkerList>, ApiError> {
    let mut workers = state.store.worker_list().await?;
    let now = Utc::now();
    let offline_after = chrono::Duration::from_std(state.config.worker_offline_after)
        .unwrap_or(chrono::Duration::MAX);
    for w in &mut workers {
        // A crashed worker cannot say it is offline; its silence does.
        if now - w.last_heartbeat_at > offline_after {
            w.status = WorkerStatus::Offline;
            w.active_tasks = 0;
            w.current_task = None;
        }
    }
    Ok(Json(WorkerList { workers }))
}
