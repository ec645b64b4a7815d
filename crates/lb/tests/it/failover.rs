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
    // The first connect failure ejected it (passive health), before any check.
    let s = stats(&lb).await;
    let out: Vec<_> = s["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["ejected"] == true || b["healthy"] == false)
        .collect();
    assert_eq!(out.len(), 1, "{s}");
    assert!(s["backends"][1]["errors"].as_u64().unwrap() <= 2, "{s}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_answering_5xx_is_ejected_and_the_rest_serve() {
    let good = TestBackend::start("good", Duration::ZERO).await;
    let bad = TestBackend::failing("bad").await;
    let lb = TestLb::start(vec![good.url(), bad.url()], Strategy::RoundRobin).await;
    let http = reqwest::Client::new();
    let mut failed = 0;
    for _ in 0..40 {
        if http
            .get(format!("{}/work", lb.base))
            .send()
            .await
            .unwrap()
            .status()
            == 500
        {
            failed += 1;
        }
    }
    // Five 500s in a row eject it; after that every request is served.
    assert_eq!(failed, 5, "failed {failed}");
    let s = stats(&lb).await;
    let bad_stats = s["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == bad.url().trim_start_matches("http://"))
        .unwrap()
        .clone();
    assert_eq!(bad_stats["ejected"], true, "{s}");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_backend_under_load_costs_at_most_its_in_flight_requests() {
    let a = TestBackend::start("a", Duration::from_millis(20)).await;
    let b = TestBackend::start("b", Duration::from_millis(20)).await;
    let c = TestBackend::start("c", Duration::from_millis(20)).await;
    let lb = TestLb::start(vec![a.url(), b.url(), c.url()], Strategy::RoundRobin).await;
    let http = reqwest::Client::new();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (http, url, stop) = (http.clone(), format!("{}/work", lb.base), stop.clone());
        clients.spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match http.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        });
    }
    // Let load build, then kill b (its connections drop, like SIGKILL).
    poll(Duration::from_secs(10), || async {
        let s = stats(&lb).await;
        (s["total_requests"].as_u64().unwrap() > 100).then_some(())
    })
    .await;
    let in_flight_on_b = stats(&lb).await["backends"][1]["in_flight"]
        .as_u64()
        .unwrap();
    b.kill().await;
    poll(Duration::from_secs(10), || async {
        let s = stats(&lb).await;
        (s["total_requests"].as_u64().unwrap() > 400).then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    while let Some(r) = clients.join_next().await {
        let (o, f) = r.unwrap();
        ok += o;
        failed += f;
    }
    // Only requests already on b when it died may fail (8 clients bound it).
    assert!(
        failed as u64 <= in_flight_on_b.max(8),
        "failed {failed}, ok {ok}"
    );
    assert!(ok > 300);
    lb.stop().await;
}

/// A POST with a body and an Idempotency-Key reaches a live backend, body
/// intact, when the first one picked cannot be connected to; without the key
/// its body is streamed once and the client gets the 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_body_with_an_idempotency_key_is_replayed_on_another_backend() {
    let dead = TestBackend::start("dead", Duration::ZERO).await;
    let live = TestBackend::start("live", Duration::ZERO).await;
    let dead_url = dead.url();
    dead.kill().await;
    let http = reqwest::Client::new();

    let lb = TestLb::start(vec![dead_url.clone(), live.url()], Strategy::RoundRobin).await;
    for i in 0..4 {
        let body = format!("payload-{i}");
        let resp = http
            .post(format!("{}/echo", lb.base))
            .header("idempotency-key", format!("key-{i}"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), body);
    }
    let s = stats(&lb).await;
    assert!(
        s["backends"][0]["errors"].as_u64().unwrap() >= 1,
        "the dead backend was never tried: {s}"
    );
    lb.stop().await;

    let lb = TestLb::start(vec![dead_url, live.url()], Strategy::RoundRobin).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let resp = http
            .post(format!("{}/echo", lb.base))
            .body(format!("no-key-{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert!(statuses.contains(&502), "{statuses:?}");
    lb.stop().await;
}

/// A backend whose accept queue is full drops new SYNs; Linux resends them
/// 1 s and 3 s later. With no other backend to try, the lb waits for those
/// instead of answering 502 when its 1 s connect timeout ends (a burst of
/// new connections to a busy API node did exactly that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_dropped_by_a_full_accept_queue_is_waited_out_on_the_last_backend() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the accept queue (backlog 1 holds two) with connections nobody
    // accepts yet; a third SYN would be dropped.
    let mut held = Vec::new();
    for _ in 0..4 {
        let connect = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), connect).await {
            held.push(s);
        }
    }
    assert!(!held.is_empty(), "the queue took no connection");
    let lb = TestLb::start_with(vec![format!("http://{addr}")], |c| {
        // No health check in the way: only the request's own connect.
        c.health_interval = Duration::from_secs(3600);
    })
    .await;
    // The backend starts accepting 1.5 s on: after the lb's first resent
    // SYN (dropped too), before its second.
    let server = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        drop(held);
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    let resp = reqwest::get(format!("{}/work", lb.base)).await.unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));
    server.abort();
    lb.stop().await;
}
