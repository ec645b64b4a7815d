//! The admin API under `/lb/`: stats, the strategy, the backends, rate limits,
//! the audit log of their changes (`audit.rs`), and the dashboard (`/dashboard`).
//! Endpoints that change state need `Authorization: Bearer <admin token>`.

pub(crate) mod audit;
mod backends;
mod extract;
pub(crate) mod guard;
mod metrics;
mod rate_limits;
pub(crate) mod throughput;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::backends::selection::ActiveStrategy;
use crate::request::rules::json_error;
use crate::state::Lb;
use crate::Strategy;
use extract::AdminJson;

pub fn router(lb: Arc<Lb>) -> Router {
    Router::new()
        .route("/dashboard", get(dashboard))
        .route("/lb/dashboard", get(dashboard))
        .route("/dashboard/tasks", get(dashboard_tasks))
        .route("/dashboard/common.js", get(dashboard_js))
        .route("/dashboard/common.css", get(dashboard_css))
        .route("/lb/stats", get(stats))
        .route("/lb/audit", get(audit_list))
        .route("/lb/health/live", get(live))
        .route("/lb/health/ready", get(ready))
        .route("/lb/metrics", get(metrics::render))
        .route("/lb/strategy", get(get_strategy).put(put_strategy))
        .route("/lb/backends", get(backends::list).post(backends::add))
        .route("/lb/backends/{id}", axum::routing::delete(backends::remove))
        .route(
            "/lb/backends/{id}/drain",
            axum::routing::post(backends::drain),
        )
        .route(
            "/lb/rate-limits",
            get(rate_limits::get_rate_limits).put(rate_limits::put_rate_limits),
        )
        .fallback(|| async {
            json_error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint")
        })
        .method_not_allowed_fallback(|| async {
            json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            lb.clone(),
            extract::require_token,
        ))
        .with_state(lb)
}

async fn stats(State(lb): State<Arc<Lb>>) -> Json<serde_json::Value> {
    let backends: Vec<_> = lb.backends.snapshot().iter().map(|b| b.stats()).collect();
    let total: u64 = backends.iter().map(|b| b.requests).sum();
    Json(json!({
        "strategy": lb.strategy.load().strategy.as_str(),
        "total_requests": total,
        "queued": lb.queued.load(std::sync::atomic::Ordering::Relaxed),
        "rejected_overload": lb.rejected_overload.load(std::sync::atomic::Ordering::Relaxed),
        "rejected_rate_limit": lb.rejected_rate_limit.load(std::sync::atomic::Ordering::Relaxed),
        "rejected_no_backend": lb.rejected_no_backend.load(std::sync::atomic::Ordering::Relaxed),
        "rejected_connections_per_ip": lb.rejected_connections.load(std::sync::atomic::Ordering::Relaxed),
        "late_answers": lb.late_answers.load(std::sync::atomic::Ordering::Relaxed),
        "requests_per_second_last_minute": lb.throughput.per_second(std::time::Instant::now()),
        "backends": backends,
        "threads": lb.thread_stats(),
    }))
}

/// `GET /lb/audit`: the lb's changes through this API, newest first.
async fn audit_list(State(lb): State<Arc<Lb>>) -> Json<serde_json::Value> {
    Json(json!({ "entries": lb.audit.newest_first() }))
}

/// Liveness: the balancer serves (its own answer, never a backend's).
async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "live"}))
}

/// Readiness: not draining, and at least one backend may be picked.
async fn ready(State(lb): State<Arc<Lb>>) -> Response {
    if lb.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this balancer is shutting down",
        );
    }
    let backends = lb.backends.snapshot();
    let available = backends
        .iter()
        .filter(|b| b.is_available() && !b.is_draining())
        .count();
    if available == 0 {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_backend",
            "no backend is healthy",
        );
    }
    Json(json!({"status": "ready", "available_backends": available})).into_response()
}

/// A page (or script, or stylesheet) of the dashboard, built into the
/// binary: nothing is fetched from elsewhere, so it works offline.
fn dashboard_asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, content_type),
            (axum::http::header::CACHE_CONTROL, "no-store"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'",
            ),
        ],
        body,
    )
        .into_response()
}

/// The live dashboard: charts, backends, workers, queues and workflows,
/// polling the endpoints above and the API behind the lb.
async fn dashboard() -> Response {
    dashboard_asset(
        "text/html; charset=utf-8",
        include_str!("dashboard/index.html"),
    )
}

/// The task browser: filters, pages, bulk actions, a task's page, the
/// audit log — all over the API behind the lb.
async fn dashboard_tasks() -> Response {
    dashboard_asset(
        "text/html; charset=utf-8",
        include_str!("dashboard/tasks.html"),
    )
}

async fn dashboard_js() -> Response {
    dashboard_asset(
        "text/javascript; charset=utf-8",
        include_str!("dashboard/common.js"),
    )
}

async fn dashboard_css() -> Response {
    dashboard_asset(
        "text/css; charset=utf-8",
        include_str!("dashboard/common.css"),
    )
}

async fn get_strategy(State(lb): State<Arc<Lb>>) -> Json<serde_json::Value> {
    let available: Vec<_> = Strategy::ALL.iter().map(|s| s.as_str()).collect();
    let active = lb.strategy.load();
    Json(json!({
        "strategy": active.strategy.as_str(),
        "hash_key": active.hash_key.to_string(),
        "available": available,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrategyChange {
    strategy: String,
    /// `client_ip` or `header:NAME`; kept as it is when absent.
    hash_key: Option<String>,
}

impl extract::Expected for StrategyChange {
    const EXPECTED: &'static str = "{\"strategy\": NAME, \"hash_key\"?: KEY}";
}

async fn put_strategy(
    State(lb): State<Arc<Lb>>,
    AdminJson(change): AdminJson<StrategyChange>,
) -> Response {
    let strategy: Strategy = match change.strategy.parse() {
        Ok(s) => s,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "unknown_strategy", &e),
    };
    let hash_key = match change.hash_key.as_deref().map(str::parse::<crate::HashKey>) {
        Some(Ok(k)) => k,
        Some(Err(e)) => return json_error(StatusCode::BAD_REQUEST, "invalid_hash_key", &e),
        None => lb.strategy.load().hash_key.clone(),
    };
    lb.strategy
        .store(Arc::new(ActiveStrategy::new(strategy, hash_key.clone())));
    tracing::info!(%strategy, %hash_key, "strategy switched");
    Json(json!({ "strategy": strategy.as_str(), "hash_key": hash_key.to_string() })).into_response()
}
