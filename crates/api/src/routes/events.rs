//! `POST /write` (event ingest), `GET /messages` and `GET /messages/count`.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use weir_core::{IdempotencyKey, StoredEvent};
use weir_ingest::{fingerprint, parse_events, BodyFormat, IdSource, IngestError, ParseError};

use crate::routes::tasks::idempotency_key;
use crate::schema::{ErrorBody, EventsAccepted, MessageCount, Messages};
use crate::state::EventSink;
use crate::{ApiError, AppState};

/// Most events `GET /messages` returns.
const MAX_MESSAGES: i64 = 1000;

/// Accepts one object, an array of objects, or NDJSON; answers 202 once the
/// events are durable (committed, or in the Redis buffer in buffered mode).
#[utoipa::path(post, path = "/write", tag = "events",
    request_body(description = "One JSON object, an array of objects, or NDJSON (Content-Type: application/x-ndjson). An `id` field (string or integer) makes a resend idempotent.",
        content((Object = "application/json"), (String = "application/x-ndjson"))),
    params(("Idempotency-Key" = Option<String>, Header, description = "Events without `id` get `KEY#index` as their id")),
    responses(
        (status = 202, description = "Durable: committed, or in the Redis buffer", body = EventsAccepted),
        (status = 400, description = "Not JSON, or an event is not an object; nothing stored", body = ErrorBody),
        (status = 413, description = "Body or event count over the limit", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key came with another batch before", body = ErrorBody),
        (status = 503, description = "Database busy or buffer full; retry after Retry-After", body = ErrorBody),
        (status = 507, description = "The database's disk is full; nothing stored; retry after Retry-After", body = ErrorBody)))]
pub async fn write(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<EventsAccepted>), ApiError> {
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
    if let Some(key) = key {
        // A key sent again with another batch is refused, not deduplicated.
        let key = IdempotencyKey {
            key,
            fingerprint: Some(fingerprint(&events)),
        };
        state.store.event_key_take(&key, Utc::now()).await?;
    }
    let accepted = events.len();
    if accepted > 0 {
        match &state.events {
            EventSink::Direct(writer) => writer.write(events).await?,
            EventSink::Buffered(buffer) => buffer.append(&events).await.map_err(ingest_error)?,
        }
        // Counted once durable (or buffered): what the ingest rate panel shows.
        state.events_accepted.increment(accepted as u64);
    }
    Ok((StatusCode::ACCEPTED, Json(EventsAccepted { accepted })))
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
        ParseError::EventTooLarge { .. } => ApiError::EventTooLarge {
            message: e.to_string(),
        },
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
        IngestError::Redis(_) | IngestError::Unsupported(_) => {
            tracing::warn!(error = %e, "ingest buffer unavailable");
            ApiError::Unavailable {
                code: "ingest_buffer_unavailable",
                message: "the ingest buffer (Redis) is unreachable; retry shortly".into(),
            }
        }
        IngestError::Store(e) => e.into(),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// How many, 1 to 1000 (default 100).
    n: Option<i64>,
}

/// The latest `n` events (default 100, at most 1000), newest first.
#[utoipa::path(get, path = "/messages", tag = "events", params(MessagesQuery),
    responses(
        (status = 200, description = "Newest first, by receive time", body = Messages),
        (status = 400, description = "n out of range", body = ErrorBody)))]
pub async fn latest(
    State(state): State<AppState>,
    query: Result<Query<MessagesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Messages>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let n = query.n.unwrap_or(100);
    if !(1..=MAX_MESSAGES).contains(&n) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("n must be between 1 and {MAX_MESSAGES}"),
        ));
    }
    let messages: Vec<StoredEvent> = state.store.event_list_latest(n).await?;
    Ok(Json(Messages { messages }))
}

#[utoipa::path(get, path = "/messages/count", tag = "events",
    responses((status = 200, description = "Events stored", body = MessageCount)))]
pub async fn count(State(state): State<AppState>) -> Result<Json<MessageCount>, ApiError> {
    Ok(Json(MessageCount {
        count: state.store.event_count().await?,
    }))
}
