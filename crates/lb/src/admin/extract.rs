//! What every admin endpoint shares: the bearer-token check, as one
//! middleware in front of every endpoint that changes state, and request
//! bodies parsed by one extractor that refuses malformed JSON and unknown
//! fields with a 400 naming what was expected.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::rules::json_error;
use crate::state::Lb;

/// Requests that change state need `Authorization: Bearer <admin token>`;
/// reads (GET, HEAD) do not.
pub(super) async fn require_token(
    State(lb): State<Arc<Lb>>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    match refusal(&lb, request.headers()) {
        Some(denied) => denied,
        None => next.run(request).await,
    }
}

/// The 401 answer when the bearer token is missing or wrong (compared in
/// constant time).
fn refusal(lb: &Lb, headers: &HeaderMap) -> Option<Response> {
    let expected = lb.config.admin_token.as_bytes();
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::as_bytes);
    match given {
        Some(given) if !expected.is_empty() && bool::from(given.ct_eq(expected)) => None,
        Some(_) => Some(json_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the admin token is wrong",
        )),
        None => Some(json_error(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "this endpoint needs Authorization: Bearer <admin token>",
        )),
    }
}

/// What an admin body looks like, for the error when it does not.
pub(super) trait Expected {
    const EXPECTED: &'static str;
}

/// A JSON admin body of type `T` (whose fields are closed: an unknown one is
/// an error, not silently ignored).
pub(super) struct AdminJson<T>(pub T);

impl<S, T> FromRequest<S> for AdminJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Expected,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        serde_json::from_slice(&body).map(AdminJson).map_err(|e| {
            json_error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                &format!("expected {}: {e}", T::EXPECTED),
            )
        })
    }
}
