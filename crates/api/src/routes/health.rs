//! `GET /health`: what the load balancer's health checks ask;
//! `GET /health/live` and `GET /health/ready`: what orchestrators probe.

use crate::schema::{ErrorBody, Health, Probe};
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::Json;

#[utoipa::path(get, path = "/health", tag = "nodes",
    responses((status = 200, description = "The node answers", body = Health)))]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        node_id: state.config.node_id.clone(),
        store: state.store.backend().to_owned(),
    })
}

/// Liveness: the process serves requests (restart it if not).
#[utoipa::path(get, path = "/health/live", tag = "nodes",
    responses((status = 200, description = "The process serves", body = Probe)))]
pub async fn live(State(state): State<AppState>) -> Json<Probe> {
    Json(Probe {
        status: "live",
        node_id: state.config.node_id.clone(),
    })
}

/// Readiness: send this node traffic — not while it drains, nor while its
/// store does not answer.
#[utoipa::path(get, path = "/health/ready", tag = "nodes",
    responses(
        (status = 200, description = "Ready for traffic", body = Probe),
        (status = 503, description = "Draining, or the store does not answer", body = ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Probe>, ApiError> {
    match state.config.readiness.check(state.store.as_ref()).await {
        Ok(()) => Ok(Json(Probe {
            status: "ready",
            node_id: state.config.node_id.clone(),
        })),
        Err(e) => Err(ApiError::Unavailable {
            code: e.code(),
            message: e.to_string(),
        }),
    }
}
