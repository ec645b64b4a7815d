//! `GET /workers`: the worker registry.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use weir_core::WorkerStatus;

use crate::{ApiError, AppState};

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({ "workers": workers })))
}
