//! Each strategy's defining property, through real traffic.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use weir_lb::Strategy;

use crate::support::{TestBackend, TestLb, TOKEN};

async fn spread(lb: &TestLb, clients: usize, per_client: usize) -> HashMap<String, usize> {
    let http = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (http, url) = (http.clone(), format!("{}/work", lb.base));
        tasks.spawn(async move {
            let mut got = Vec::new();
            for _ in 0..per_client {
                let resp = http.get(&url).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                got.push(resp.text().await.unwrap());
            }
            got
        });
    }
    let mut counts = HashMap::new();
    while let Some(got) = tasks.join_next().await {
        for name in got.unwrap() {
            *counts.entry(name).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_gives_each_backend_an_equal_share() {
    let mut backends = Vec::new();
    for name in ["a", "b", "c"] {
        backends.push(TestBackend::start(name, Duration::ZERO).await);
    }
    let lb = TestLb::start(
        backends.iter().map(|b| b.url()).collect(),
        Strategy::RoundRobin,
    )
    .await;
    let counts = spread(&lb, 1, 99).await;
    assert_eq!(counts["a"], 33);
    assert_eq!(counts["b"], 33);
    assert_eq!(counts["c"], 33);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_avoids_a_slow_backend() {
    let slow = TestBackend::start("slow", Duration::from_millis(300)).await;
    let fast = TestBackend::start("fast", Duration::from_millis(5)).await;
    let lb = TestLb::start(vec![slow.url(), fast.url()], Strategy::RoundRobin).await;
    // Switch at runtime, as an operator would.
    let resp = reqwest::Client::new()
        .put(format!("{}/lb/strategy", lb.base))
        .bearer_auth(TOKEN)
        .json(&json!({"strategy": "least_connections"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let counts = spread(&lb, 8, 10).await;
    let (s, f) = (counts.get("slow").copied().unwrap_or(0), counts["fast"]);
    // Round robin would give each 40; least connections piles onto the fast one.
    assert!(f >= 4 * s, "fast {f} vs slow {s}");
    lb.stop().await;
}
