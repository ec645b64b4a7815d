//! Active health checks: `GET /health` on every backend each interval; `fall`
//! failures in a row mark it down, `rise` successes mark it up.

use std::sync::Arc;

use http::{Request, Uri};

use crate::state::Lb;

/// Checks every backend once, concurrently, and waits for all checks.
pub async fn check_all(lb: &Arc<Lb>) {
    let mut checks = tokio::task::JoinSet::new();
    for backend in lb.backends.snapshot().iter().cloned() {
        let lb = lb.clone();
        checks.spawn(async move {
            if probe(&lb, backend.authority.as_str()).await {
                backend.record_check_success(lb.config.health_rise);
            } else {
                backend.record_check_failure(lb.config.health_fall);
            }
        });
    }
    while checks.join_next().await.is_some() {}
}

async fn probe(lb: &Lb, authority: &str) -> bool {
    let Ok(uri) = format!("http://{authority}/health").parse::<Uri>() else {
        return false;
    };
    let Ok(req) = Request::get(uri).body(axum::body::Body::empty()) else {
        return false;
    };
    match tokio::time::timeout(lb.config.health_timeout, lb.client().request(req)).await {
        Ok(Ok(resp)) => resp.status().is_success(),
        _ => false,
    }
}

/// Runs checks every `health_interval`, forever (the caller aborts it).
pub async fn run(lb: Arc<Lb>) {
    let mut ticker = tokio::time::interval(lb.config.health_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        check_all(&lb).await;
    }
}
