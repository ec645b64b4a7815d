//! The API's one error type: every failure becomes `{"error":{"code","message"}}`
//! with a fitting status. Internal causes are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use weir_core::{InputError, StoreError};
use weir_store::submission::SubmitError;

/// Seconds a client is asked to wait when the database is busy or away.
const RETRY_AFTER_SECS: u64 = 1;

/// Answers of `503 database_busy`: the store stayed busy or unreachable
/// past `--db-busy-timeout`.
pub(crate) const DATABASE_BUSY_METRIC: &str = "weir_api_database_busy_total";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; `code` names what is wrong.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 404: no such resource.
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// 401 with `WWW-Authenticate: Bearer`: no or a wrong credential.
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    /// 403: the credential is known but does not allow this.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// 409: the resource is in a state the request does not apply to.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 422: an idempotency key reused for a different request.
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 413: the body is over the configured limit.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 413: more of something than configured (`code` names what).
    #[error("{message}")]
    TooLarge { code: &'static str, message: String },
    /// 413: one event larger than accepted.
    #[error("{message}")]
    EventTooLarge { message: String },
    /// 413: more events in one request than configured.
    #[error("the body holds {count} events; at most {max} are accepted per request")]
    TooManyEvents { count: usize, max: usize },
    /// 503 with Retry-After: a dependency other than the database is full or away.
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// 503 with Retry-After: the database is busy or unreachable.
    #[error("the database is busy or unreachable; retry shortly")]
    DatabaseBusy,
    /// 507 with Retry-After: the database's disk is full; nothing was stored.
    #[error("the database's disk is full; nothing was stored: retry once space is freed")]
    DiskFull,
    /// 500: a bug or a broken database; details are in the log.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::NotFound { code, .. } => (StatusCode::NOT_FOUND, code),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Unauthorized { code, .. } => (StatusCode::UNAUTHORIZED, code),
            ApiError::Forbidden { code, .. } => (StatusCode::FORBIDDEN, code),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::TooManyEvents { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_events"),
            ApiError::TooLarge { code, .. } => (StatusCode::PAYLOAD_TOO_LARGE, code),
            ApiError::EventTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "event_too_large"),
            ApiError::Unavailable { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, code),
            ApiError::DatabaseBusy => (StatusCode::SERVICE_UNAVAILABLE, "database_busy"),
            ApiError::DiskFull => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if let StoreError::IdempotencyKeyReused(named) = e {
            return ApiError::Unprocessable {
                code: "idempotency_key_reused",
                message: format!(
                    "this Idempotency-Key was used for a different request ({named}); \
                     use a new key for a new request"
                ),
            };
        }
        if let StoreError::DiskFull(_) = e {
            tracing::warn!(error = %e, "store's disk full");
            ApiError::DiskFull
        } else if e.is_retryable() {
            tracing::warn!(error = %e, "store unavailable");
            ApiError::DatabaseBusy
        } else {
            tracing::error!(error = %e, "store error");
            ApiError::Internal
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        let code = match &e {
            InputError::UnknownKind { .. } => "unknown_task_type",
            InputError::Option { option, .. } => match *option {
                "queue" => "invalid_queue",
                "concurrency_key" => "invalid_concurrency_key",
                "retry_backoff" => "invalid_retry_backoff",
                "timeout" => "invalid_timeout",
                _ => "invalid_input",
            },
            _ => "invalid_input",
        };
        ApiError::bad_request(code, e.to_string())
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Input(e) => e.into(),
            SubmitError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::DatabaseBusy) {
            metrics::counter!(DATABASE_BUSY_METRIC).increment(1);
        }
        let (status, code) = self.status_and_code();
        let body = json!({ "error": { "code": code, "message": self.to_string() } });
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::INSUFFICIENT_STORAGE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
