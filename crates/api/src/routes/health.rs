//! `GET /health`: what the load balancer's health checks ask.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;

pub async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "status": "ok", "node_id": state.config.node_id, "store": state.store.backend() }))
}
