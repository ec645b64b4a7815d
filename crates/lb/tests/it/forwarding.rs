//! What the proxy does to a request and its answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;
use weir_lb::Strategy;

use crate::support::{TestBackend, TestLb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_path_query_and_headers_and_returns_the_answer_unchanged() {
    let backend = TestBackend::start("b1", Duration::ZERO).await;
    let lb = TestLb::start(vec![backend.url()], Strategy::RoundRobin).await;
    let resp = reqwest::Client::new()
        .get(format!("{}/echo?a=1&b=two", lb.base))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-client", "c1")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "must-not-pass")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-backend"], "b1");
    assert_eq!(resp.headers()["x-custom"], "kept");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["query"], serde_json::json!([["a", "1"], ["b", "two"]]));
    let h = &body["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-client"], "c1");
    assert!(
        h.get("x-hop").is_none(),
        "connection-named header passed: {h}"
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_large_bodies_both_ways() {
    let backend = TestBackend::start("b1", Duration::ZERO).await;
    let lb = TestLb::start(vec![backend.url()], Strategy::RoundRobin).await;
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let resp = reqwest::Client::new()
        .post(format!("{}/echo", lb.base))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), payload.as_slice());
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_502_json_when_no_backend_answers() {
    let dead = TestBackend::start("gone", Duration::ZERO).await;
    let url = dead.url();
    dead.kill().await;
    let lb = TestLb::start(vec![url], Strategy::RoundRobin).await;
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let resp = reqwest::Client::new()
            .request(method, format!("{}/echo", lb.base))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 502);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "backend_unreachable", "{body}");
    }
    // The only backend is never ejected (nowhere else to go); the active
    // checks mark it down.
    let stats: Value = crate::support::poll(Duration::from_secs(10), || async {
        let s: Value = reqwest::get(format!("{}/lb/stats", lb.base))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (s["backends"][0]["healthy"] == false).then_some(s)
    })
    .await;
    assert_eq!(stats["backends"][0]["ejected"], false);
    assert!(stats["backends"][0]["errors"].as_u64().unwrap() >= 2);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_carries_a_request_id_both_ways() {
    let backend = TestBackend::start("b1", Duration::ZERO).await;
    let lb = TestLb::start(vec![backend.url()], Strategy::RoundRobin).await;
    let http = reqwest::Client::new();
    // None given: one is made, sent to the backend and returned.
    let resp = http.get(format!("{}/echo", lb.base)).send().await.unwrap();
    let returned = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(returned.len() >= 16, "{returned}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["headers"]["x-request-id"], returned.as_str());
    // One given: kept as it is.
    let resp = http
        .get(format!("{}/echo", lb.base))
        .header("x-request-id", "client-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "client-42");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["headers"]["x-request-id"], "client-42");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_prometheus_metrics_show_each_backend() {
    let backend = TestBackend::start("b1", Duration::from_millis(5)).await;
    let lb = TestLb::start(vec![backend.url()], Strategy::RoundRobin).await;
    let http = reqwest::Client::new();
    for _ in 0..20 {
        assert_eq!(
            http.get(format!("{}/work", lb.base))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let stats = lb.stats().await;
    let b = &stats["backends"][0];
    assert_eq!(b["requests"], 20);
    let p50 = b["latency_p50_ms"].as_f64().unwrap();
    let p99 = b["latency_p99_ms"].as_f64().unwrap();
    assert!(p50 >= 4.0 && p99 >= p50, "{b}");

    let resp = http
        .get(format!("{}/lb/metrics", lb.base))
        .send()
        .await
        .unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    let id = backend.url().trim_start_matches("http://").to_string();
    assert!(
        text.contains(&format!(
            "weir_lb_backend_requests_total{{backend=\"{id}\"}} 20"
        )),
        "{text}"
    );
    assert!(text.contains("weir_lb_backend_latency_seconds{"), "{text}");
    // The per-backend latency histogram: every request counted, none of them
    // (each waits at least 4 ms upstream) under 2.5 ms.
    let series = "weir_lb_request_duration_seconds";
    for line in [
        format!("{series}_count{{backend=\"{id}\"}} 20"),
        format!("{series}_bucket{{backend=\"{id}\",le=\"+Inf\"}} 20"),
        format!("{series}_bucket{{backend=\"{id}\",le=\"0.0025\"}} 0"),
        format!("{series}_bucket{{backend=\"{id}\",le=\"60\"}} 20"),
    ] {
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
    assert!(
        text.contains("weir_lb_rejected_total{reason=\"overload\"} 0"),
        "{text}"
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_http2_cleartext_clients() {
    let backend = TestBackend::start("b1", Duration::ZERO).await;
    let lb = TestLb::start(vec![backend.url()], Strategy::RoundRobin).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for _ in 0..3 {
        let resp = h2.get(format!("{}/work", lb.base)).send().await.unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "b1");
    }
    lb.stop().await;
}

/// An upstream as nginx's `keepalive_requests` makes it: each connection is
/// closed after `per_connection` requests, the last answer saying
/// `Connection: close`. Answers each POST with its body's length.
async fn recycling_upstream(per_connection: usize) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let served = Arc::new(AtomicUsize::new(0));
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let nth = served.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    let body = req.into_body().collect().await?.to_bytes();
                    let mut answer = hyper::Response::new(Full::new(Bytes::from(format!(
                        "got {} bytes",
                        body.len()
                    ))));
                    if nth >= per_connection {
                        answer
                            .headers_mut()
                            .insert("connection", "close".parse().unwrap());
                    }
                    Ok::<_, hyper::Error>(answer)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (url, connections)
}

/// Upstreams close keep-alive connections every so often (nginx's default:
/// every 1,000 requests). No request is lost or failed for it — POSTs
/// included, which the lb may not resend — and the lb opens a new
/// connection only when one was closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_recycling_its_connections_costs_no_request() {
    let (url, connections) = recycling_upstream(10).await;
    let lb = TestLb::start(vec![url], Strategy::RoundRobin).await;
    let http = reqwest::Client::new();
    let clients = (0..16).map(|c| {
        let (http, base) = (http.clone(), lb.base.clone());
        tokio::spawn(async move {
            for i in 0..50 {
                let body = "x".repeat(100 + c * 50 + i);
                let resp = http
                    .post(format!("{base}/submit"))
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "client {c} request {i}");
                assert_eq!(
                    resp.text().await.unwrap(),
                    format!("got {} bytes", body.len())
                );
            }
        })
    });
    for client in futures_util::future::join_all(clients).await {
        client.unwrap();
    }
    // 800 requests, 10 per connection: 80 connections at the least, and
    // nowhere near one per request (health checks add a few).
    let opened = connections.load(Ordering::SeqCst);
    assert!(
        (80..=160).contains(&opened),
        "{opened} upstream connections"
    );
    let stats = lb.stats().await;
    assert_eq!(stats["backends"][0]["errors"], 0, "{stats}");
    lb.stop().await;
}
