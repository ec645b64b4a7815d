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

async fn names(backends: &[(&str, Duration)]) -> Vec<TestBackend> {
    let mut started = Vec::new();
    for (name, delay) in backends {
        started.push(TestBackend::start(name, *delay).await);
    }
    started
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_interleaves_5_1_1_like_nginx() {
    let b = names(&[
        ("a", Duration::ZERO),
        ("b", Duration::ZERO),
        ("c", Duration::ZERO),
    ])
    .await;
    let urls = vec![
        format!("{}=5", b[0].url()),
        format!("{}=1", b[1].url()),
        format!("{}=1", b[2].url()),
    ];
    let lb = TestLb::start(urls, Strategy::WeightedRoundRobin).await;
    let http = reqwest::Client::new();
    let mut seq = String::new();
    for _ in 0..14 {
        seq += &http
            .get(format!("{}/work", lb.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    assert_eq!(seq, "aabacaaaabacaa");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_keeps_each_key_on_one_backend() {
    let b = names(&[
        ("a", Duration::ZERO),
        ("b", Duration::ZERO),
        ("c", Duration::ZERO),
    ])
    .await;
    let lb = TestLb::start_with(b.iter().map(|b| b.url()).collect(), |c| {
        c.strategy = Strategy::ConsistentHash;
        c.hash_key = "header:x-tenant".parse().unwrap();
    })
    .await;
    let http = reqwest::Client::new();
    let mut owners = HashMap::new();
    for tenant in 0..60 {
        for _ in 0..4 {
            let name = http
                .get(format!("{}/work", lb.base))
                .header("x-tenant", format!("tenant-{tenant}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let owner = owners.entry(tenant).or_insert_with(|| name.clone());
            assert_eq!(*owner, name, "tenant-{tenant} moved");
        }
    }
    let used: std::collections::HashSet<_> = owners.values().collect();
    assert_eq!(used.len(), 3, "keys spread over every backend: {owners:?}");
    lb.stop().await;
}

/// Regression: `PUT /lb/strategy` with a `hash_key` switched the strategy
/// but kept hashing by client IP (every request from one client went to one
/// backend whatever its tenant header).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_consistent_hash_takes_its_hash_key() {
    let b = names(&[
        ("a", Duration::ZERO),
        ("b", Duration::ZERO),
        ("c", Duration::ZERO),
    ])
    .await;
    let lb = TestLb::start(b.iter().map(|b| b.url()).collect(), Strategy::RoundRobin).await;
    let http = reqwest::Client::new();
    let put = |body: serde_json::Value| {
        http.put(format!("{}/lb/strategy", lb.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    let resp = put(json!({"strategy": "consistent_hash", "hash_key": "header:X-Tenant"}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let shown: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(shown["hash_key"], "header:x-tenant");
    let mut owners = HashMap::new();
    for tenant in 0..30 {
        for _ in 0..3 {
            let name = http
                .get(format!("{}/work", lb.base))
                .header("x-tenant", format!("tenant-{tenant}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let owner = owners.entry(tenant).or_insert_with(|| name.clone());
            assert_eq!(*owner, name, "tenant-{tenant} moved");
        }
    }
    let used: std::collections::HashSet<_> = owners.values().collect();
    assert!(
        used.len() > 1,
        "one client's tenants all on one backend: {owners:?}"
    );
    for (body, code) in [
        (
            json!({"strategy": "round_robin", "hash_key": "tenant"}),
            "invalid_hash_key",
        ),
        (
            json!({"strategy": "round_robin", "hashkey": "client_ip"}),
            "invalid_json",
        ),
    ] {
        let resp = put(body).await.unwrap();
        assert_eq!(resp.status(), 400);
        let err: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], code, "{err}");
    }
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_ewma_and_power_of_two_avoid_a_slow_backend() {
    for strategy in [Strategy::PeakEwma, Strategy::PowerOfTwoChoices] {
        let b = names(&[
            ("slow", Duration::from_millis(200)),
            ("f1", Duration::from_millis(2)),
            ("f2", Duration::from_millis(2)),
        ])
        .await;
        let lb = TestLb::start(b.iter().map(|b| b.url()).collect(), strategy).await;
        let counts = spread(&lb, 6, 20).await;
        let slow = counts.get("slow").copied().unwrap_or(0);
        // Round robin would send it 40 of 120.
        assert!(slow <= 15, "{strategy}: {counts:?}");
        lb.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_can_be_switched_to_at_runtime() {
    let b = names(&[("a", Duration::ZERO), ("b", Duration::ZERO)]).await;
    let lb = TestLb::start(b.iter().map(|b| b.url()).collect(), Strategy::RoundRobin).await;
    let http = reqwest::Client::new();
    for strategy in Strategy::ALL {
        let resp = http
            .put(format!("{}/lb/strategy", lb.base))
            .bearer_auth(TOKEN)
            .json(&json!({"strategy": strategy.as_str()}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let shown: serde_json::Value = http
            .get(format!("{}/lb/strategy", lb.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(shown["strategy"], strategy.as_str());
        let resp = http.get(format!("{}/work", lb.base)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{strategy}");
    }
    lb.stop().await;
}

/// A backend that refuses at once looks idle to a count of requests in
/// flight; least connections and power of two choices must count its fast
/// refusals as load, or it soaks up most of the traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_aware_strategies_do_not_feed_a_fast_refuser() {
    for strategy in [Strategy::LeastConnections, Strategy::PowerOfTwoChoices] {
        let slow = TestBackend::start("slow", Duration::from_millis(20)).await;
        let refuser = TestBackend::refusing("refuser").await;
        let lb = TestLb::start(vec![slow.url(), refuser.url()], strategy).await;
        let http = reqwest::Client::new();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (http, url) = (http.clone(), format!("{}/work", lb.base));
            tasks.spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..40 {
                    statuses.push(http.get(&url).send().await.unwrap().status().as_u16());
                }
                statuses
            });
        }
        let (mut ok, mut refused) = (0, 0);
        while let Some(statuses) = tasks.join_next().await {
            for s in statuses.unwrap() {
                match s {
                    200 => ok += 1,
                    429 => refused += 1,
                    other => panic!("{strategy:?}: unexpected {other}"),
                }
            }
        }
        // Without the bias the refuser, always idle, would take nearly all 320.
        assert!(
            refused * 4 < ok + refused,
            "{strategy:?}: {refused} of {} went to the refusing backend",
            ok + refused
        );
        lb.stop().await;
    }
}

/// Regression: admin bodies with an unknown field were accepted and the
/// field silently ignored (`{"urll": …}` on `/lb/backends`, `{"defualt": …}`
/// on `/lb/rate-limits`). Every admin body is closed now, and every change
/// needs the token, whatever the endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bodies_refuse_unknown_fields_and_changes_need_the_token() {
    let b = names(&[("a", Duration::ZERO)]).await;
    let lb = TestLb::start(b.iter().map(|b| b.url()).collect(), Strategy::RoundRobin).await;
    let http = reqwest::Client::new();
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/lb/backends",
            json!({"url": "http://127.0.0.1:1", "wieght": 2}),
        ),
        (
            reqwest::Method::PUT,
            "/lb/rate-limits",
            json!({"defualt": {"per_second": 1, "burst": 1}}),
        ),
        (
            reqwest::Method::PUT,
            "/lb/rate-limits",
            json!({"routes": [{"path_prefix": "/x", "per_second": 1, "burst": 1, "metod": "GET"}]}),
        ),
        (
            reqwest::Method::PUT,
            "/lb/strategy",
            json!({"strategy": "round_robin", "extra": true}),
        ),
    ] {
        let resp = http
            .request(method.clone(), format!("{}{path}", lb.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{method} {path} {body}");
        let err: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], "invalid_json", "{err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("unknown field"),
            "{err}"
        );
        let unauthenticated = http
            .request(method, format!("{}{path}", lb.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(unauthenticated.status(), 401);
    }
    let drain = http
        .post(format!("{}/lb/backends/nope/drain", lb.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(drain.status(), 401);
    let err: serde_json::Value = drain.json().await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_token");
    // Reads stay open.
    let stats = http
        .get(format!("{}/lb/stats", lb.base))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 200);
    lb.stop().await;
}

/// `--admin-allow` keeps the admin API from other networks (reads too), and
/// a client presenting wrong tokens is locked out before its token is even
/// checked, so guessing stays slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refuses_outside_the_allow_list_and_locks_out_token_guessing() {
    let backend = TestBackend::start("b1", Duration::ZERO).await;
    let outside = TestLb::start_with(vec![backend.url()], |c| {
        c.admin_allow = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let resp = reqwest::get(format!("{}/lb/stats", outside.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "admin_not_allowed");
    // Proxied paths are not the admin API: still served.
    let resp = reqwest::get(format!("{}/work", outside.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    outside.stop().await;

    let lb = TestLb::start(vec![backend.url()], Strategy::RoundRobin).await;
    let client = reqwest::Client::new();
    let put = |token: &str| {
        client
            .put(format!("{}/lb/strategy", lb.base))
            .bearer_auth(token)
            .json(&serde_json::json!({"strategy": "least_connections"}))
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(put("wrong").await.unwrap().status().as_u16());
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert_eq!(&statuses[10..], &[429, 429], "{statuses:?}");
    // Locked out: even the right token waits out the window.
    assert_eq!(put(TOKEN).await.unwrap().status(), 429);
    lb.stop().await;
}
