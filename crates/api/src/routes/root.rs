//! `GET /`: the logged hello, and `GET /requests/stats`.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use weir_core::{RequestLogEntry, RequestLogStats};

use crate::request_log::{truncate, AlreadyLogged};
use crate::schema::ErrorBody;
use crate::{ApiError, AppState};

/// Longest `message` stored; longer ones are cut.
const MAX_MESSAGE_BYTES: usize = 4096;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HelloQuery {
    /// Stored with the request-log row (cut to 4 KiB).
    message: Option<String>,
}

/// Waits the configured delay, writes a request-log row, and answers once the
/// row is committed.
#[utoipa::path(get, path = "/", tag = "requests", params(HelloQuery),
    responses(
        (status = 200, description = "The row is committed", body = String, content_type = "text/plain",
            example = "Written to DB by node api-1"),
        (status = 503, description = "Database busy; retry after Retry-After", body = ErrorBody)))]
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

#[utoipa::path(get, path = "/requests/stats", tag = "requests",
    responses((status = 200, description = "Requests logged, in all and per node", body = RequestLogStats)))]
pub async fn stats(State(state): State<AppState>) -> Result<Json<RequestLogStats>, ApiError> {
    Ok(Json(state.store.request_log_stats().await?))
}
