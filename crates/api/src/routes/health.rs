//! `GET /health`: what the load balancer's health checks ask.

use crate::schema::Health;
use crate::AppState;
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
