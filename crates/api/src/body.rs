//! A JSON body extractor whose every rejection is a precise [`ApiError`].
//!
//! Unlike `axum::Json` it does not insist on `Content-Type: application/json`
//! (curl's `-d` sends a form type; the body is what matters), and it names the
//! line and column of a syntax error.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::{ApiError, AppState};

pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: state.config.max_body_bytes,
                }
            } else {
                ApiError::bad_request("invalid_body", rejection.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "missing_body",
                "a JSON body is required",
            ));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            let code = if e.is_data() {
                "invalid_input"
            } else {
                "invalid_json"
            };
            ApiError::bad_request(code, format!("invalid JSON body: {e}"))
        })
    }
}
