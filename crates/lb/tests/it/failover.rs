//! Health checks and failover.

use std::time::Duration;

use serde_json::Value;
use weir_lb::Strategy;

use crate::support::{poll, TestBackend, TestLb};

async fn stats(lb: &TestLb) -> Value {
    reqwest::get(format!("{}/lb/stats", lb.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_costs_no_idempotent_request() {
    let a = TestBackend::start("a", Duration::ZERO).await;
    let b = TestBackend::start("b", Duration::ZERO).await;
    let c = TestBackend::start("c", Duration::ZERO).await;
    let lb = TestLb::start(vec![a.url(), b.url(), c.url()], Strategy::RoundRobin).await;
    let http = reqwest::Client::new();
    b.kill().await;
    // Before any health check notices, every GET is retried on a live backend.
    for _ in 0..60 {
        let resp = http.get(format!("{}/work", lb.base)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_ne!(resp.text().await.unwrap(), "b");
    }
    let s = stats(&lb).await;
    let down: Vec<_> = s["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["healthy"] == false)
        .collect();
    assert_eq!(down.len(), 1, "{s}");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_mark_a_backend_down_and_up_again() {
    let a = TestBackend::start("a", Duration::ZERO).await;
    let b = TestBackend::start("b", Duration::ZERO).await;
    let b_addr = b.addr;
    let lb = TestLb::start(vec![a.url(), b.url()], Strategy::RoundRobin).await;
    b.kill().await;
    poll(Duration::from_secs(10), || async {
        let s = stats(&lb).await;
        (s["backends"][1]["healthy"] == false).then_some(())
    })
    .await;
    // Bring a backend back on the same port: checks mark it up again.
    let listener = tokio::net::TcpListener::bind(b_addr).await.unwrap();
    let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
    let revived = tokio::spawn(async move { axum::serve(listener, app).await });
    poll(Duration::from_secs(10), || async {
        let s = stats(&lb).await;
        (s["backends"][1]["healthy"] == true).then_some(())
    })
    .await;
    revived.abort();
    lb.stop().await;
}
