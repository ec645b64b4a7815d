//! weir's stateless API node: every request is logged, tasks are accepted and
//! answered, cached results are served, and workers are listed. All state lives
//! in the store, so any number of nodes can run behind the load balancer.
//! Events sent to `POST /write` are stored directly or through a Redis buffer
//! (see `weir_ingest`).
//!
//! # Layout
//! - [`app`]: the router; [`run`] serves it on a listener until shutdown.
//! - [`state`]: [`AppState`] and [`ApiConfig`].
//! - [`error`]: [`ApiError`], the one JSON error every handler returns.
//! - [`body`]: [`body::JsonBody`], a JSON extractor with precise 4xx errors.
//! - [`request_log`]: middleware that tags answers with the node id and logs requests.
//! - `routes/`: one file per resource (`root`, `tasks`, `events`, `cache`,
//!   `workers`, `health`).

pub mod body;
pub mod error;
pub mod request_log;
mod routes;
pub mod state;

use std::future::Future;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};
use tokio::net::TcpListener;

pub use error::ApiError;
pub use state::{ApiConfig, AppState, EventSink};

/// The API's routes, with body limit and request logging applied.
pub fn app(state: AppState) -> Router {
    weir_telemetry::install();
    Router::new()
        .route("/", get(routes::root::hello))
        .route("/requests/stats", get(routes::root::stats))
        .route("/hash/{kind}", post(routes::tasks::submit_hash))
        .route(
            "/tasks",
            post(routes::tasks::submit).get(routes::tasks::list),
        )
        .route(
            "/tasks/{id}",
            get(routes::tasks::get).delete(routes::tasks::cancel),
        )
        .route("/tasks/stats", get(routes::tasks::stats))
        .route("/tasks/{id}/retry", post(routes::tasks::retry))
        .route("/workers", get(routes::workers::list))
        .route("/cache/stats", get(routes::cache::stats))
        .route(
            "/write",
            post(routes::events::write).layer(DefaultBodyLimit::max(state.config.max_write_bytes)),
        )
        .route("/messages", get(routes::events::latest))
        .route("/messages/count", get(routes::events::count))
        .route("/health", get(routes::health::health))
        .route("/metrics", get(routes::metrics::render))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_log::log_request,
        ))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then lets in-flight
/// requests finish.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
