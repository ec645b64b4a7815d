//! Active health checks: `GET /health` on every backend each interval; `fall`
//! failures in a row mark it down, `rise` successes mark it up.

use std::sync::Arc;

use http::Request;

use crate::state::Lb;
use crate::upstream::{self, Route};
use crate::Backend;

/// Checks every backend once, concurrently, and waits for all checks.
pub async fn check_all(lb: &Arc<Lb>) {
    let mut checks = tokio::task::JoinSet::new();
    for backend in lb.backends.snapshot().iter() {
        let (lb, backend) = (lb.clone(), backend.clone());
        checks.spawn(async move {
            if probe(&lb, &backend).await {
                backend.record_check_success(lb.config.health_rise);
            } else {
                backend.record_check_failure(lb.config.health_fall);
            }
        });
    }
    while checks.join_next().await.is_some() {}
}

async fn probe(lb: &Lb, backend: &Backend) -> bool {
    let authority = backend.authority.as_str();
    let Ok(req) = Request::get("/health")
        .header(http::header::HOST, authority)
        .body(axum::body::Body::empty())
    else {
        return false;
    };
    let local = lb
        .config
        .send_proxy_protocol
        .then(crate::proxy::proxy_header_local);
    let route = Route::to(backend, lb.backend_tls()).with_proxy_header(local.as_deref());
    let config = &lb.config;
    let sent = upstream::send(
        route,
        req,
        config.connect_timeout,
        config.upstream_idle_timeout,
    );
    match tokio::time::timeout(config.health_timeout, sent).await {
        Ok(Ok(resp)) => {
            let ok = resp.status().is_success();
            // Read to the end, so the connection goes back to the pool.
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            ok
        }
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
