//! Queues at runtime: `GET /queues`, `POST /queues/{name}/pause` and
//! `/resume`, `PUT /queues/{name}` (its limits for every worker, without a
//! restart).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use weir_core::QueueLimits;

use crate::audit::Actor;
use crate::body::JsonBody;
use crate::schema::{ErrorBody, QueueStats};
use crate::{ApiError, AppState};

/// `GET /queues`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct QueueList {
    pub queues: Vec<QueueStats>,
}

/// The queue named `name`, as `GET /queues` shows it.
async fn view(state: &AppState, name: &str) -> Result<QueueStats, ApiError> {
    let mut queues = super::tasks::queue_stats(state.store.as_ref(), chrono::Utc::now()).await?;
    Ok(match queues.iter().position(|q| q.name == name) {
        Some(i) => queues.swap_remove(i),
        None => QueueStats::empty(name),
    })
}

fn queue_name(name: &str) -> Result<(), ApiError> {
    if weir_core::task_type::valid_queue_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_queue",
            "a queue name is 1 to 64 of A-Z a-z 0-9 _ . : -",
        ))
    }
}

/// `GET /queues`: every queue with tasks, limits or a pause — depth, the
/// oldest due task's wait, limits, and whether it is paused.
#[utoipa::path(get, path = "/queues", tag = "queues",
    responses((status = 200, description = "Every known queue", body = QueueList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<QueueList>, ApiError> {
    let queues = super::tasks::queue_stats(state.store.as_ref(), chrono::Utc::now()).await?;
    Ok(Json(QueueList { queues }))
}

/// `POST /queues/{name}/pause`: no worker, built-in or external, claims
/// from it until it is resumed. Answers once every claimer holds to it.
#[utoipa::path(post, path = "/queues/{name}/pause", tag = "queues",
    params(("name" = String, Path, description = "The queue")),
    responses(
        (status = 200, description = "Paused", body = QueueStats),
        (status = 400, description = "Not a queue name", body = ErrorBody)))]
pub async fn pause(
    State(state): State<AppState>,
    actor: Actor,
    Path(name): Path<String>,
) -> Result<Json<QueueStats>, ApiError> {
    queue_name(&name)?;
    state.store.queue_pause(&name, true).await?;
    actor
        .record(&state, "queue.pause", Some(name.clone()), None, None)
        .await;
    view(&state, &name).await.map(Json)
}

/// `POST /queues/{name}/resume`: claimable again; waiting workers wake.
#[utoipa::path(post, path = "/queues/{name}/resume", tag = "queues",
    params(("name" = String, Path, description = "The queue")),
    responses(
        (status = 200, description = "Resumed", body = QueueStats),
        (status = 400, description = "Not a queue name", body = ErrorBody)))]
pub async fn resume(
    State(state): State<AppState>,
    actor: Actor,
    Path(name): Path<String>,
) -> Result<Json<QueueStats>, ApiError> {
    queue_name(&name)?;
    state.store.queue_pause(&name, false).await?;
    actor
        .record(&state, "queue.resume", Some(name.clone()), None, None)
        .await;
    view(&state, &name).await.map(Json)
}

/// A queue's limits; absent or null: none.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLimits {
    /// Most of its tasks running at once, across the cluster (1 or more).
    concurrency: Option<i32>,
    /// Most of its tasks started per second, across the cluster.
    rate_per_second: Option<f64>,
    /// Starts the rate may allow at once (1 or more; default: the rate).
    burst: Option<i32>,
}

/// `PUT /queues/{name}`: its limits, for every worker at once (no restart).
#[utoipa::path(put, path = "/queues/{name}", tag = "queues", request_body = SetLimits,
    params(("name" = String, Path, description = "The queue")),
    responses(
        (status = 200, description = "Set", body = QueueStats),
        (status = 400, description = "A limit out of range", body = ErrorBody)))]
pub async fn set_limits(
    State(state): State<AppState>,
    actor: Actor,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<SetLimits>,
) -> Result<Json<QueueStats>, ApiError> {
    queue_name(&name)?;
    let limits = QueueLimits {
        name: name.clone(),
        concurrency: body.concurrency,
        rate_per_second: body.rate_per_second,
        burst: body.burst,
        paused: false,
    };
    limits
        .check()
        .map_err(|e| ApiError::bad_request("invalid_limits", e))?;
    state.store.queue_configure(&limits).await?;
    let detail = serde_json::json!({
        "concurrency": limits.concurrency,
        "rate_per_second": limits.rate_per_second,
        "burst": limits.burst,
    });
    actor
        .record(
            &state,
            "queue.set_limits",
            Some(name.clone()),
            Some(detail),
            None,
        )
        .await;
    view(&state, &name).await.map(Json)
}
