//! `/lb/backends`: list, add, remove and drain backends at runtime.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::extract::{AdminJson, Expected};
use crate::request::rules::json_error;
use crate::state::Lb;
use crate::Backend;

pub async fn list(State(lb): State<Arc<Lb>>) -> Json<serde_json::Value> {
    let backends: Vec<_> = lb.backends.snapshot().iter().map(|b| b.stats()).collect();
    Json(json!({ "backends": backends }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewBackend {
    url: String,
    #[serde(default)]
    weight: Option<u32>,
}

impl Expected for NewBackend {
    const EXPECTED: &'static str = "{\"url\": \"http://host:port\", \"weight\"?: N}";
}

/// `POST /lb/backends {"url", "weight"?}`: 201 when added, 200 when it was
/// already there (registration is idempotent: a restarted node re-registers).
pub async fn add(State(lb): State<Arc<Lb>>, AdminJson(new): AdminJson<NewBackend>) -> Response {
    let spec = match new.weight {
        Some(w) => format!("{}={w}", new.url),
        None => new.url,
    };
    let backend = match Backend::parse(&spec) {
        Ok(b) => b,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "invalid_backend", &e),
    };
    let stats = backend.stats();
    let status = if lb.backends.add(backend) {
        tracing::info!(backend = %stats.id, "backend added");
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(json!({ "backend": stats }))).into_response()
}

/// `DELETE /lb/backends/{id}`: no new requests go there; in-flight ones finish.
pub async fn remove(State(lb): State<Arc<Lb>>, Path(id): Path<String>) -> Response {
    if lb.backends.remove(&id) {
        tracing::info!(backend = %id, "backend removed");
        Json(json!({ "removed": id })).into_response()
    } else {
        not_found(&id)
    }
}

/// `POST /lb/backends/{id}/drain`: stays listed, gets no new requests.
pub async fn drain(State(lb): State<Arc<Lb>>, Path(id): Path<String>) -> Response {
    match lb.backends.snapshot().iter().find(|b| b.id() == id) {
        Some(b) => {
            b.set_draining(true);
            tracing::info!(backend = %id, in_flight = b.in_flight(), "backend draining");
            Json(json!({ "backend": b.stats() })).into_response()
        }
        None => not_found(&id),
    }
}

fn not_found(id: &str) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "backend_not_found",
        &format!("no backend {:?}", id.chars().take(128).collect::<String>()),
    )
}
