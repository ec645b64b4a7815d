//! Backends added, drained and removed at runtime through the admin API.

use std::time::Duration;

use serde_json::{json, Value};
use weir_lb::Strategy;

use crate::support::{TestBackend, TestLb, TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_join_drain_and_leave_at_runtime() {
    let a = TestBackend::start("a", Duration::ZERO).await;
    let b = TestBackend::start("b", Duration::from_millis(300)).await;
    let lb = TestLb::start(vec![a.url()], Strategy::RoundRobin).await;
    let http = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{}{path}", lb.base))
            .bearer_auth(TOKEN)
    };

    // Join: 201, then 200 when registered again; needs the token; bad URLs are 400.
    let add = json!({"url": b.url()});
    let resp = http
        .post(format!("{}/lb/backends", lb.base))
        .json(&add)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = admin(reqwest::Method::POST, "/lb/backends")
        .json(&add)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let b_id = resp.json::<Value>().await.unwrap()["backend"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let again = admin(reqwest::Method::POST, "/lb/backends")
        .json(&add)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let bad = admin(reqwest::Method::POST, "/lb/backends")
        .json(&json!({"url": "ftp://x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_backend"
    );

    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(
            http.get(format!("{}/work", lb.base))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    assert_eq!(seen.len(), 2, "both backends serve: {seen:?}");

    // Drain b while a slow request is in flight on it: the request finishes,
    // and nothing new goes to b.
    let in_flight = {
        let (http, base) = (http.clone(), lb.base.clone());
        tokio::spawn(async move {
            // Round robin: send until one lands on b (the slow one).
            loop {
                let t = http
                    .get(format!("{base}/work"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                if t == "b" {
                    return t;
                }
            }
        })
    };
    crate::support::poll(Duration::from_secs(5), || async {
        let stats = lb.stats().await;
        let b_stats = stats["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == b_id.as_str())
            .cloned();
        b_stats.filter(|s| s["in_flight"] == 1)
    })
    .await;
    let resp = admin(reqwest::Method::POST, &format!("/lb/backends/{b_id}/drain"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["backend"]["draining"],
        true
    );
    for _ in 0..6 {
        let t = http
            .get(format!("{}/work", lb.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(t, "a");
    }
    assert_eq!(in_flight.await.unwrap(), "b");

    // Leave.
    let resp = admin(reqwest::Method::DELETE, &format!("/lb/backends/{b_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = admin(reqwest::Method::DELETE, &format!("/lb/backends/{b_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let list: Value = http
        .get(format!("{}/lb/backends", lb.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["backends"].as_array().unwrap().len(), 1);
    lb.stop().await;
}

/// A reload (SIGHUP) makes the configured backends the new list: new ones
/// join, dropped ones leave, a changed weight applies; a backend added at
/// runtime stays, and a bad URL changes nothing.
#[test]
fn a_reload_makes_the_configured_backends_and_keeps_the_ones_added_at_runtime() {
    let lb = weir_lb::Lb::new(weir_lb::LbConfig::new(vec![
        "http://127.0.0.1:1".into(),
        "http://127.0.0.1:2=3".into(),
    ]))
    .unwrap();
    lb.backends
        .add(weir_lb::Backend::parse("http://127.0.0.1:9").unwrap());
    let listed = || {
        let mut ids: Vec<(String, u32)> = lb
            .backends
            .snapshot()
            .iter()
            .map(|b| (b.id().to_string(), b.weight))
            .collect();
        ids.sort();
        ids
    };
    let reloaded = lb
        .reload_backends(&["http://127.0.0.1:2=5".into(), "http://127.0.0.1:3".into()])
        .unwrap();
    assert_eq!(
        reloaded,
        weir_lb::BackendsReloaded {
            added: 2,
            removed: 2
        }
    );
    let expected = vec![
        ("127.0.0.1:2".to_string(), 5),
        ("127.0.0.1:3".to_string(), 1),
        ("127.0.0.1:9".to_string(), 1),
    ];
    assert_eq!(listed(), expected);
    let err = lb
        .reload_backends(&["http://127.0.0.1:4".into(), "ftp://x:1".into()])
        .unwrap_err();
    assert!(err.contains("ftp://"), "{err}");
    assert_eq!(listed(), expected, "a bad list changed the backends");
}
