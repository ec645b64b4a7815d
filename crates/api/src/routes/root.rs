//! `GET /`: the logged hello, and `GET /requests/stats`.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use weir_core::{RequestLogEntry, RequestLogStats};

use crate::request_log::{truncate, AlreadyLogged};
use crate::{ApiError, AppState};

/// Longest `message` stored; longer ones are cut.
const MAX_MESSAGE_BYTES: usize = 4096;

#[derive(Deserialize)]
pub struct HelloQuery {
    message: Option<String>,
}

/// Waits the configured delay, writes a request-log row, and answers once the
/// row is committed.
pub async fn hello(
    State(state): State<AppState>,
    query: Result<Query<HelloQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    if !state.config.delay.is_zero() {
        tokio::time::sleep(state.config.delay).await;
    }
    let entry = RequestLogEntry {
        node_id: state.config.node_id.clone(),
        method: "GET".into(),
        path: "/".into(),
        status: 200,
        message: query.message.map(|m| truncate(m, MAX_MESSAGE_BYTES)),
        created_at: Utc::now(),
    };
    state.request_log.write(entry).await?;
    let mut response = format!("Written to DB by node {}", state.config.node_id).into_response();
    response.extensions_mut().insert(AlreadyLogged);
    Ok(response)
}

pub async fn stats(State(state): State<AppState>) -> Result<Json<RequestLogStats>, ApiError> {
    Ok(Json(state.store.request_log_stats().await?))
}
