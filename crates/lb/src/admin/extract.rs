//! What every admin endpoint shares: the bearer-token check, as one
//! middleware in front of every endpoint that changes state, and request
//! bodies parsed by one extractor that refuses malformed JSON and unknown
//! fields with a 400 naming what was expected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::admin::guard;
use crate::request::rules::json_error;
use crate::state::Lb;

/// Only clients in `--admin-allow` reach the admin API; requests that
/// change state need `Authorization: Bearer <admin token>`, reads (GET,
/// HEAD) do not; a client IP that presented too many wrong tokens is locked
/// out for a while, before its token is even looked at.
pub(super) async fn require_token(
    State(lb): State<Arc<Lb>>,
    request: Request,
    next: Next,
) -> Response {
    // Probes come from the orchestrator's addresses and reveal nothing.
    if request.uri().path().starts_with("/lb/health/") {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = peer {
        if !guard::allowed(&lb.config.admin_allow, ip) {
            return json_error(
                StatusCode::FORBIDDEN,
                "admin_not_allowed",
                "this address may not use the admin API (--admin-allow)",
            );
        }
    }
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let now = Instant::now();
    if let Some(left) = peer.and_then(|ip| lb.failed_logins.locked(ip, now)) {
        let mut resp = json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failed_logins",
            "too many wrong admin tokens from this address; retry later",
        );
        let secs = HeaderValue::from(left.as_secs().max(1));
        resp.headers_mut().insert(header::RETRY_AFTER, secs);
        return resp;
    }
    match refusal(&lb, request.headers()) {
        Some(denied) => {
            if let Some(ip) = peer {
                lb.failed_logins.record(ip, now);
            }
            denied
        }
        None => {
            if let Some(ip) = peer {
                lb.failed_logins.forget(ip);
            }
            let (method, path) = (request.method().clone(), request.uri().path().to_owned());
            let answer = next.run(request).await;
            if answer.status().is_success() {
                lb.audit.record(peer, &method, &path, answer).await
            } else {
                answer
            }
        }
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
