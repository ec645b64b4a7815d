//! A trivial upstream for load-balancer benchmarks: answers `GET /` (and
//! `/health`) with `ok`, optionally slower and sometimes with a 500 — a
//! "gray" backend that is up but bad, or one that works on only so many
//! requests at once (a fixed pool of application workers, as gunicorn's
//! sync workers) while the rest wait their turn.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;

#[derive(Clone, Debug)]
pub struct UpstreamSpec {
    pub listen: SocketAddr,
    pub delay: Duration,
    /// Share of answers that are 500, in per mille.
    pub error_per_mille: u64,
    /// Requests worked on at once (each for `delay`); `None`: unlimited.
    pub capacity: Option<usize>,
}

/// Serves until the process ends; returns the bound address via `ready`.
pub async fn run(spec: UpstreamSpec, ready: impl FnOnce(SocketAddr)) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(spec.listen).await?;
    ready(listener.local_addr()?);
    let counter = Arc::new(AtomicU64::new(0));
    let workers = Arc::new(tokio::sync::Semaphore::new(
        spec.capacity.unwrap_or(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback(move || {
            let (spec, counter, workers) = (spec.clone(), counter.clone(), workers.clone());
            async move {
                let _worker = workers.acquire_owned().await;
                if !spec.delay.is_zero() {
                    tokio::time::sleep(spec.delay).await;
                }
                // Every n-th answer fails: a steady error rate, no randomness.
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if spec.error_per_mille > 0
                    && (n * spec.error_per_mille) % 1000 < spec.error_per_mille
                {
                    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "error")
                } else {
                    (axum::http::StatusCode::OK, "ok")
                }
            }
        });
    axum::serve(listener, app).await
}
