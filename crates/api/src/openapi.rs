//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]`
//! attributes as [`crate::app`] registers them — a route cannot be served
//! without being described — and served at `GET /openapi.json`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;

use crate::schema::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "weir API",
        description = "A weir API node: the request log, durable tasks, the shared result cache, workers and event ingest. Every error is `{\"error\":{\"code\",\"message\"}}`.",
        license(name = "MIT OR Apache-2.0")
    ),
    tags(
        (name = "requests", description = "The logged hello and the request log"),
        (name = "tasks", description = "Submit, watch, retry and cancel tasks"),
        (name = "queues", description = "Named queues: depth, limits, pause and resume at runtime"),
        (name = "workflows", description = "Tasks in the order of a graph: chains, fan-out and fan-in, DAGs"),
        (name = "cache", description = "The shared result cache"),
        (name = "workers", description = "The worker registry"),
        (name = "external", description = "Workers in any language: claim, heartbeat, complete, fail (Bearer worker token)"),
        (name = "events", description = "JSON event ingest"),
        (name = "audit", description = "Who changed what: every manage action"),
        (name = "nodes", description = "Health, metrics and this document"),
    ),
    components(schemas(ErrorBody, weir_core::TaskSort))
)]
pub struct ApiDoc;

/// The whole document (built once).
pub fn spec() -> &'static utoipa::openapi::OpenApi {
    static SPEC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    SPEC.get_or_init(|| {
        crate::routes(crate::BodyLimits::UNLIMITED)
            .split_for_parts()
            .1
    })
}

#[utoipa::path(get, path = "/openapi.json", tag = "nodes",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn document() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| spec().to_pretty_json().expect("the spec serializes"));
    ([(header::CONTENT_TYPE, "application/json")], json.as_str())
}
