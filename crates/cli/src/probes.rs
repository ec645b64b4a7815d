//! `/health/live` and `/health/ready` for a worker, on its metrics listener
//! (a worker has no other HTTP port). API nodes and the lb serve their own.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use weir_core::Store;
use weir_store::Readiness;

#[derive(Clone)]
struct Probed {
    readiness: Readiness,
    store: Arc<dyn Store>,
}

/// The probe routes: ready while not draining and the store answers.
pub fn router(readiness: Readiness, store: Arc<dyn Store>) -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(json!({"status": "live"})) }),
        )
        .route("/health/ready", get(ready))
        .with_state(Probed { readiness, store })
}

async fn ready(State(p): State<Probed>) -> Response {
    match p.readiness.check(p.store.as_ref()).await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"code": e.code(), "message": e.to_string()}})),
        )
            .into_response(),
    }
}
