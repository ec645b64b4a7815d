//! Per-client rate limits through real traffic.

use std::time::Duration;

use serde_json::{json, Value};
use weir_lb::admission::ratelimit::{RateLimitConfig, RatePolicy, RouteLimit};

use crate::support::{TestBackend, TestLb, TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_gets_429_with_retry_after_and_draft_headers() {
    let backend = TestBackend::start("a", Duration::ZERO).await;
    let lb = TestLb::start_with(vec![backend.url()], |c| {
        c.rate_limit = RateLimitConfig {
            default: Some(RatePolicy {
                per_second: 1,
                burst: 5,
            }),
            routes: vec![RouteLimit {
                method: Some(http::Method::POST),
                path_prefix: "/echo".into(),
                policy: RatePolicy {
                    per_second: 1,
                    burst: 1,
                },
            }],
        };
    })
    .await;
    let http = reqwest::Client::new();
    for i in 0..5 {
        let resp = http.get(format!("{}/work", lb.base)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(resp.headers()["ratelimit-policy"], "\"default\";q=5;w=5");
        assert!(resp.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"default\";r="));
    }
    let resp = http.get(format!("{}/work", lb.base)).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.headers()["ratelimit"], "\"default\";r=0;t=1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");

    // The stricter route has its own bucket.
    let post = || http.post(format!("{}/echo", lb.base)).body("x").send();
    assert_eq!(post().await.unwrap().status(), 200);
    assert_eq!(post().await.unwrap().status(), 429);

    // The admin API shows the policy and who is limited.
    let shown: Value = http
        .get(format!("{}/lb/rate-limits", lb.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["policy"]["default"]["per_second"], 1);
    assert_eq!(shown["limited_clients"][0]["client"], "127.0.0.1");
    assert!(shown["limited_clients"][0]["rejected"].as_u64().unwrap() >= 2);

    // Changing limits needs the token; lifting them lets the client through.
    let lift = json!({"default": null, "routes": []});
    let denied = http
        .put(format!("{}/lb/rate-limits", lb.base))
        .json(&lift)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let bad = http
        .put(format!("{}/lb/rate-limits", lb.base))
        .bearer_auth(TOKEN)
        .json(&json!({"default": {"per_second": 0, "burst": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let ok = http
        .put(format!("{}/lb/rate-limits", lb.base))
        .bearer_auth(TOKEN)
        .json(&lift)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let resp = http.get(format!("{}/work", lb.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("ratelimit").is_none());
    lb.stop().await;
}

/// The 429, the headers the limiter adds, and the edge's headers are one
/// decision (`request/phases.rs`) rendered by both paths: an HTTP/1.1
/// client (the fast path) and an HTTP/2 one (hyper's path) get the same
/// answer. Before, hyper's 429 carried neither a request id nor the edge's
/// headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_give_the_same_429_with_the_same_added_headers() {
    let backend = TestBackend::start("a", Duration::ZERO).await;
    let lb = TestLb::start_with(vec![backend.url()], |c| {
        c.rate_limit = RateLimitConfig {
            default: Some(RatePolicy {
                per_second: 1,
                burst: 1,
            }),
            routes: Vec::new(),
        };
        c.edge_headers = weir_lb::edge::EdgeHeaders::new(
            vec![weir_lb::edge::parse_header("X-Content-Type-Options: nosniff").unwrap()],
            None,
        );
    })
    .await;
    let http1 = reqwest::Client::builder().http1_only().build().unwrap();
    let http2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let allowed = http1.get(format!("{}/work", lb.base)).send().await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["x-content-type-options"], "nosniff");
    assert!(allowed.headers().contains_key("ratelimit"));
    for (path, client) in [("HTTP/1.1", &http1), ("HTTP/2", &http2)] {
        // The bucket refills once a second: a slow machine may see one more
        // request through before the refusal.
        let mut resp = client
            .get(format!("{}/work", lb.base))
            .send()
            .await
            .unwrap();
        for _ in 0..5 {
            if resp.status() == 429 {
                break;
            }
            resp = client
                .get(format!("{}/work", lb.base))
                .send()
                .await
                .unwrap();
        }
        assert_eq!(resp.status(), 429, "{path}");
        let headers = resp.headers().clone();
        assert_eq!(headers["retry-after"], "1", "{path}");
        assert_eq!(headers["ratelimit-policy"], "\"default\";q=1;w=1", "{path}");
        assert_eq!(headers["ratelimit"], "\"default\";r=0;t=1", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert!(!headers["x-request-id"].is_empty(), "{path}");
        assert_eq!(headers["content-type"], "application/json", "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited", "{path}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("too many requests from 127.0.0.1; retry in"),
            "{path}: {message}"
        );
    }
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let backend = TestBackend::start("a", Duration::ZERO).await;
    let lb = TestLb::start_with(vec![backend.url()], |c| {
        c.rate_limit.default = Some(RatePolicy {
            per_second: 1,
            burst: 1,
        });
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let http = reqwest::Client::new();
    let get = |client: &'static str| {
        http.get(format!("{}/work", lb.base))
            .header("x-forwarded-for", client)
            .send()
    };
    // Each client behind the trusted proxy has its own bucket.
    assert_eq!(get("203.0.113.1").await.unwrap().status(), 200);
    assert_eq!(get("203.0.113.1").await.unwrap().status(), 429);
    assert_eq!(get("203.0.113.2").await.unwrap().status(), 200);
    lb.stop().await;
}

fn shared(c: &mut weir_lb::LbConfig, redis: &weir_testkit::RedisPrefix, burst: u32) {
    c.rate_limit = RateLimitConfig {
        default: Some(RatePolicy {
            per_second: 1,
            burst,
        }),
        routes: Vec::new(),
    };
    c.rate_limit_redis = Some(redis.url());
    c.rate_limit_redis_prefix = redis.key("rl");
}

/// Two balancers sharing Redis give a client one budget, not one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lbs_sharing_redis_share_each_clients_budget() {
    let redis = weir_testkit::RedisPrefix::create();
    let backend = TestBackend::start("a", Duration::ZERO).await;
    let one = TestLb::start_with(vec![backend.url()], |c| shared(c, &redis, 4)).await;
    let two = TestLb::start_with(vec![backend.url()], |c| shared(c, &redis, 4)).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    // Four through one lb, then two through the other: the budget of 4 is spent.
    for lb in [&one, &one, &one, &one, &two, &two] {
        let resp = http.get(format!("{}/work", lb.base)).send().await.unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 200 {
            assert!(resp.headers()["ratelimit"]
                .to_str()
                .unwrap()
                .starts_with("\"default\";r="));
        } else {
            let wait: u64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&wait), "retry-after {wait}");
        }
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 429, 429]);
    // The state lives in Redis under the prefix.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", redis.key("rl")))
        .query(&mut conn)
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let shown: Value = http
        .get(format!("{}/lb/rate-limits", two.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["shared"], true, "{shown}");
    one.stop().await;
    two.stop().await;
}

/// Redis away: each lb still limits on its own, it does not stop limiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_an_lb_falls_back_to_its_own_limits() {
    let backend = TestBackend::start("a", Duration::ZERO).await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", closed.local_addr().unwrap());
    drop(closed);
    let lb = TestLb::start_with(vec![backend.url()], |c| {
        c.rate_limit = RateLimitConfig {
            default: Some(RatePolicy {
                per_second: 1,
                burst: 3,
            }),
            routes: Vec::new(),
        };
        c.rate_limit_redis = Some(url);
    })
    .await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp = http.get(format!("{}/work", lb.base)).send().await.unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    lb.stop().await;
}
