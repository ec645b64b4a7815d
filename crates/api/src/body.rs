//! A JSON body extractor whose every rejection is a precise [`ApiError`].
//!
//! Unlike `axum::Json` it does not insist on `Content-Type: application/json`
//! (curl's `-d` sends a form type; the body is what matters), it names the
//! line and column of a syntax error, and a field of the wrong type by its
//! path and what it accepts.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::{ApiError, AppState};

pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        // The limit the route was given (`app` layers the same ones).
        let limit = state.config.json_body_limit(req.uri().path());
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
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
        parse(&bytes).map(JsonBody)
    }
}

/// Deserializes a whole body; a field that does not fit is named by its path.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if !inner.is_data() {
            ApiError::bad_request("invalid_json", format!("invalid JSON body: {inner}"))
        } else if path == "." || path.is_empty() {
            ApiError::bad_request("invalid_input", format!("invalid JSON body: {inner}"))
        } else {
            ApiError::bad_request(
                "invalid_input",
                format!("{path}: {}", accepts(&path, &inner)),
            )
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// What a field accepts, in words, from serde's message about it.
fn accepts(path: &str, e: &serde_json::Error) -> String {
    let why = e.to_string();
    // serde_json ends its message with " at line L column C".
    let why = why
        .rsplit_once(" at line ")
        .map_or(why.as_str(), |(w, _)| w);
    let field = path.rsplit('.').next().unwrap_or(path);
    if field.ends_with("_at") {
        return format!("expected an RFC 3339 time like 2026-12-05T09:30:00Z ({why})");
    }
    for (ty, range) in [
        ("i32", "an integer from -2147483648 to 2147483647"),
        (
            "i64",
            "an integer from -9223372036854775808 to 9223372036854775807",
        ),
        ("u32", "an integer from 0 to 4294967295"),
        ("u64", "an integer from 0 to 18446744073709551615"),
        ("usize", "an integer from 0 to 18446744073709551615"),
    ] {
        if why.ends_with(&format!("expected {ty}")) {
            return format!("expected {range} ({why})");
        }
    }
    why.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Form {
        run_at: Option<chrono::DateTime<chrono::Utc>>,
        priority: Option<i32>,
        name: Option<String>,
    }

    fn message(body: &str) -> (&'static str, String) {
        match parse::<Form>(body.as_bytes()).unwrap_err() {
            ApiError::BadRequest { code, message } => (code, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_time_is_named_with_what_it_accepts() {
        let (code, m) = message(r#"{"run_at": "not-a-date"}"#);
        assert_eq!(code, "invalid_input");
        assert!(m.starts_with("run_at: expected an RFC 3339 time"), "{m}");
    }

    #[test]
    fn an_out_of_range_integer_is_named_with_its_range() {
        let (_, m) = message(r#"{"priority": 99999999999}"#);
        assert!(
            m.starts_with("priority: expected an integer from -2147483648 to 2147483647"),
            "{m}"
        );
        let (_, m) = message(r#"{"priority": "high"}"#);
        assert!(m.starts_with("priority: "), "{m}");
    }

    #[test]
    fn syntax_errors_keep_their_line_and_column() {
        let (code, m) = message("{\"name\": ");
        assert_eq!(code, "invalid_json");
        assert!(m.contains("line 1 column"), "{m}");
        let (code, _) = message(r#"{"name": "a"} trailing"#);
        assert_eq!(code, "invalid_json");
    }
}
