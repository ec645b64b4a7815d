//! `POST /write` (event ingest), `GET /messages` and `GET /messages/count`.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use weir_core::StoredEvent;
use weir_ingest::{parse_events, BodyFormat, IdSource, IngestError, ParseError};

use crate::routes::tasks::idempotency_key;
use crate::state::EventSink;
use crate::{ApiError, AppState};

/// Most events `GET /messages` returns.
const MAX_MESSAGES: i64 = 1000;

/// Accepts one object, an array of objects, or NDJSON; answers 202 once the
/// events are durable (committed, or in the Redis buffer in buffered mode).
pub async fn write(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: state.config.max_write_bytes,
            }
        } else {
            ApiError::bad_request("invalid_body", rejection.body_text())
        }
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "missing_body",
            "a JSON object, a JSON array of objects or NDJSON is required",
        ));
    }
    let format = if is_ndjson(&headers) {
        BodyFormat::Ndjson
    } else {
        BodyFormat::Json
    };
    let key = idempotency_key(&headers, None)?;
    let ids = key.as_deref().map_or(IdSource::Random, IdSource::Key);
    let events = parse_events(
        &body,
        format,
        ids,
        state.config.max_write_events,
        Utc::now(),
    )
    .map_err(parse_error)?;
    let accepted = events.len();
    if accepted > 0 {
        match &state.events {
            EventSink::Direct(writer) => writer.write(events).await?,
            EventSink::Buffered(buffer) => buffer.append(&events).await.map_err(ingest_error)?,
        }
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": accepted }))))
}

fn is_ndjson(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let essence = content_type
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl"
    )
}

fn parse_error(e: ParseError) -> ApiError {
    match e {
        ParseError::TooManyEvents { count, max } => ApiError::TooManyEvents { count, max },
        ParseError::Syntax { .. } => ApiError::bad_request("invalid_json", e.to_string()),
        ParseError::NotAnObject { .. } => ApiError::bad_request("invalid_event", e.to_string()),
        ParseError::InvalidId { .. } => ApiError::bad_request("invalid_event_id", e.to_string()),
        ParseError::Unstorable { .. } => ApiError::bad_request("invalid_event", e.to_string()),
    }
}

fn ingest_error(e: IngestError) -> ApiError {
    match e {
        IngestError::Full { .. } => ApiError::Unavailable {
            code: "ingest_buffer_full",
            message: e.to_string(),
        },
        IngestError::Redis(_) => {
            tracing::warn!(error = %e, "ingest buffer unavailable");
            ApiError::Unavailable {
                code: "ingest_buffer_unavailable",
                message: "the ingest buffer (Redis) is unreachable; retry shortly".into(),
            }
        }
        IngestError::Store(e) => e.into(),
    }
}

#[derive(Deserialize)]
pub struct MessagesQuery {
    n: Option<i64>,
}

/// The latest `n` events (default 100, at most 1000), newest first.
pub async fn latest(
    State(state): State<AppState>,
    query: Result<Query<MessagesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let n = query.n.unwrap_or(100);
    if !(1..=MAX_MESSAGES).contains(&n) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("n must be between 1 and {MAX_MESSAGES}"),
        ));
    }
    let messages: Vec<StoredEvent> = state.store.event_list_latest(n).await?;
    Ok(Json(json!({ "messages": messages })))
}

pub async fn count(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "count": state.store.event_count().await? })))
}
