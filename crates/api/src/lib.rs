//! weir's stateless API node: every request is logged, tasks are accepted and
//! answered, cached results are served, and workers are listed. All state lives
//! in the store, so any number of nodes can run behind the load balancer.
//! Events sent to `POST /write` are stored directly or through a Redis buffer
//! (see `weir_ingest`).
//!
//! # Layout
//! - [`app`]: the router; [`run`] serves it on a listener until shutdown,
//!   through [`serve`] (connections that hold nothing until their first byte).
//! - [`state`]: [`AppState`] and [`ApiConfig`].
//! - [`error`]: [`ApiError`], the one JSON error every handler returns.
//! - [`api_keys`]: client keys and their scopes (`--api-keys`); `auth`: the
//!   middleware that checks them; [`audit`]: who asks, and the audit log
//!   manage actions write.
//! - `bulk_runner`: the background service doing bulk actions' batches.
//! - [`body`]: [`body::JsonBody`], a JSON extractor with precise 4xx errors.
//! - [`request_log`]: middleware that tags answers with the node id, logs
//!   requests, records their durations and their spans ([`trace`]).
//! - [`schema`]: the JSON answers as types; [`openapi`]: the OpenAPI document
//!   built from them and the handlers (`GET /openapi.json`).
//! - `routes/`: one file per resource (`root`, `tasks`, `task_types`,
//!   `external` — the pull API of workers in any language —, `events`,
//!   `cache`, `workers`, `health`, `metrics`).

pub mod api_keys;
pub mod audit;
mod auth;
pub mod body;
mod bulk_runner;
pub mod error;
pub mod jwt;
pub mod openapi;
pub mod request_log;
mod routes;
pub mod schema;
pub mod serve;
pub mod state;
pub mod trace;

use std::future::Future;

use axum::extract::DefaultBodyLimit;
use axum::{middleware, Router};
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};

pub use error::ApiError;
pub use routes::cache::cache_stats;
pub use routes::tasks::task_stats;
pub use routes::workers::worker_list;
pub use state::{ApiConfig, AppState, BodyLimits, EventSink};

/// The API's routes, with body limit and request logging applied.
pub fn app(state: AppState) -> Router {
    weir_telemetry::install();
    let (router, _spec) = routes(state.config.body_limits()).split_for_parts();
    let mut router = router
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes));
    // Without keys the check would pass every request: not layered at all.
    if state.config.api_keys.is_some() {
        router = router.layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    }
    let router = router.layer(middleware::from_fn_with_state(
        state.clone(),
        request_log::log_request,
    ));
    // Outermost: a browser's preflight carries no key, and is answered here.
    let router = match cors(&state.config.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.with_state(state)
}

/// The CORS policy `--cors-origin` asks for; `None`: closed (no headers).
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Each is a valid header value: `weir` checks `--cors-origin` at start.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("x-api-key"),
                header::HeaderName::from_static("idempotency-key"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Every route with its OpenAPI description: registering one is describing it.
fn routes(limits: BodyLimits) -> OpenApiRouter<AppState> {
    use routes::{
        audit, bulk, cache, events, external, health, metrics, queues, root, task_types, tasks,
        workers, workflows,
    };
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(utoipa_axum::routes!(root::hello))
        .routes(utoipa_axum::routes!(root::stats))
        .routes(utoipa_axum::routes!(tasks::submit_hash))
        .routes(utoipa_axum::routes!(tasks::submit, tasks::list))
        .routes(utoipa_axum::routes!(tasks::get, tasks::cancel))
        .routes(utoipa_axum::routes!(tasks::stats))
        .routes(utoipa_axum::routes!(tasks::retry))
        .routes(utoipa_axum::routes!(bulk::start, bulk::list))
        .routes(utoipa_axum::routes!(bulk::get))
        .routes(utoipa_axum::routes!(audit::list))
        .routes(
            utoipa_axum::routes!(workflows::submit, workflows::list)
                .layer(DefaultBodyLimit::max(limits.workflows)),
        )
        .routes(
            utoipa_axum::routes!(workflows::add_steps)
                .layer(DefaultBodyLimit::max(limits.workflows)),
        )
        .routes(utoipa_axum::routes!(workflows::get))
        .routes(utoipa_axum::routes!(workflows::cancel))
        .routes(utoipa_axum::routes!(queues::list))
        .routes(utoipa_axum::routes!(queues::set_limits))
        .routes(utoipa_axum::routes!(queues::pause))
        .routes(utoipa_axum::routes!(queues::resume))
        .routes(utoipa_axum::routes!(workers::list))
        .routes(utoipa_axum::routes!(task_types::list))
        .routes(utoipa_axum::routes!(external::claim))
        .routes(utoipa_axum::routes!(external::heartbeat))
        .routes(utoipa_axum::routes!(external::complete))
        .routes(utoipa_axum::routes!(external::fail))
        .routes(utoipa_axum::routes!(cache::stats))
        .routes(utoipa_axum::routes!(events::write).layer(DefaultBodyLimit::max(limits.write)))
        .routes(utoipa_axum::routes!(events::latest))
        .routes(utoipa_axum::routes!(events::count))
        .routes(utoipa_axum::routes!(health::health))
        .routes(utoipa_axum::routes!(health::live))
        .routes(utoipa_axum::routes!(health::ready))
        .routes(utoipa_axum::routes!(metrics::render))
        .routes(utoipa_axum::routes!(openapi::document))
}

/// Serves the API on `listener` until `shutdown` completes, then lets in-flight
/// requests finish.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // For tasks queued from SQL: the types this node knows and their defaults.
    let defaults = state
        .submitter
        .types()
        .defaults(state.config.default_max_attempts);
    if let Err(e) = state
        .store
        .task_types_publish(&defaults, chrono::Utc::now())
        .await
    {
        tracing::warn!(error = %e, "could not publish the task types");
    }
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    if let Some(jwt) = state.config.jwt.clone() {
        // A file was read at start; a URL is fetched now (an identity
        // provider that is down leaves tokens refused until it answers).
        if let Err(e) = jwt.reload().await {
            tracing::warn!("jwt-jwks: {e}");
        }
        tokio::spawn(jwt.refresh_until(stop.clone()));
    }
    let runner = tokio::spawn(bulk_runner::run(state.clone(), stop));
    let served = serve::serve(listener, app(state), shutdown).await;
    // Between batches: what it did is committed, the rest resumes anywhere.
    let _ = stop_tx.send(true);
    let _ = runner.await;
    served
}
