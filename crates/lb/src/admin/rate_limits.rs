//! `/lb/rate-limits`: the policy, who is limited, changing it at runtime.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::extract::{AdminJson, Expected};
use crate::admission::ratelimit::RateLimitConfig;
use crate::request::rules::json_error;
use crate::state::Lb;

pub async fn get_rate_limits(State(lb): State<Arc<Lb>>) -> Json<serde_json::Value> {
    let limited: Vec<_> = lb
        .rate_limits
        .limited_clients()
        .into_iter()
        .map(|(ip, rejected, ago)| json!({"client": ip.to_string(), "rejected": rejected, "last_rejected_secs_ago": ago}))
        .collect();
    let trusted: Vec<_> = lb
        .rate_limits
        .trusted_proxies()
        .iter()
        .map(|n| n.to_string())
        .collect();
    Json(json!({
        "policy": lb.rate_limits.config(),
        "trusted_proxies": trusted,
        "tracked_clients": lb.rate_limits.tracked_clients(),
        // Where the budgets live: this lb only, or Redis, shared by every lb.
        "shared": lb.shared_limits.is_some(),
        "limited_clients": limited,
    }))
}

impl Expected for RateLimitConfig {
    const EXPECTED: &'static str =
        "{\"default\": {\"per_second\", \"burst\"} | null, \"routes\": [...]}";
}

pub async fn put_rate_limits(
    State(lb): State<Arc<Lb>>,
    AdminJson(config): AdminJson<RateLimitConfig>,
) -> Response {
    if let Err(e) = lb.rate_limits.set(config.clone()) {
        return json_error(StatusCode::BAD_REQUEST, "invalid_rate_limit", &e);
    }
    tracing::info!(?config, "rate limits changed");
    Json(json!({ "policy": config })).into_response()
}
