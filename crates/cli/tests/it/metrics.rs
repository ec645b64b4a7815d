//! Prometheus `/metrics` on the API and on a worker (`--metrics-listen`),
//! scraped from separate `weir` processes as Prometheus would.

use std::time::Duration;

use serde_json::{json, Value};

use crate::processes::{listening_url, WeirProcess};
use crate::support::{poll, SharedDb, StoreKind};

/// The value of the one series named `name` whose labels include all of
/// `labels` (Prometheus text format), if there is one.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn scrape(http: &reqwest::Client, url: &str) -> String {
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_worker_serve_prometheus_metrics_with_conventional_names() {
    let db = SharedDb::create(StoreKind::Sqlite).await;
    let (_api, line) = WeirProcess::start(
        &["api", "--listen", "127.0.0.1:0", "--database-url", &db.url],
        "listening on",
    );
    let api = listening_url(&line);
    let (_worker, line) = WeirProcess::start(
        &[
            "worker",
            "--worker-id",
            "metrics-worker",
            "--metrics-listen",
            "127.0.0.1:0",
            "--database-url",
            &db.url,
            "--no-migrate",
        ],
        "serving metrics on",
    );
    let worker_metrics = listening_url(&line);
    assert!(worker_metrics.ends_with("/metrics"), "{line}");

    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        let body = json!({"type": "md5", "input": {"string": format!("metrics-{i}")}});
        ids.push(submit(&http, &api, &body).await);
    }
    // Fails once, then succeeds on its second attempt: one retry.
    let flaky = json!({"type": "flaky", "input": {"fail_times": 1}, "retry_backoff": "5ms:10ms"});
    ids.push(submit(&http, &api, &flaky).await);
    for id in &ids {
        poll(Duration::from_secs(30), || async {
            let task: Value = http
                .get(format!("{api}/tasks/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (task["status"] == "succeeded").then_some(())
        })
        .await;
    }

    let text = scrape(&http, &worker_metrics).await;
    let id = r#"worker_id="metrics-worker""#;
    assert_eq!(
        sample(&text, "worker_messages_processed_total", &[id]),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "worker_messages_failed_total", &[id]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "worker_retry_attempts_total", &[id]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "worker_active_tasks", &[id]),
        Some(0.0),
        "{text}"
    );
    // Seven attempts came in claims (more if a task taken ahead was
    // handed back and claimed again).
    let claims = sample(&text, "worker_claims_total", &[id]).unwrap_or(0.0);
    let claimed = sample(&text, "worker_claimed_tasks_total", &[id]).unwrap_or(0.0);
    assert!(claims >= 1.0 && claimed >= 7.0, "{text}");
    // What the heartbeat alert reads: written moments ago; and nobody has
    // been marked offline.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let heartbeat = sample(&text, "worker_last_heartbeat_timestamp_seconds", &[id]).unwrap();
    assert!(
        (now - heartbeat).abs() < 60.0,
        "{heartbeat} vs {now}: {text}"
    );
    assert_eq!(
        sample(&text, "weir_workers_marked_offline_total", &[]),
        Some(0.0),
        "{text}"
    );

    // Made-up methods share one series: clients cannot mint new ones.
    for _ in 0..3 {
        let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
        let resp = http
            .request(brew, format!("{api}/tasks"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405);
    }
    let text = scrape(&http, &format!("{api}/metrics")).await;
    assert!(!text.contains("BREW"), "{text}");
    assert_eq!(
        sample(
            &text,
            "http_server_request_duration_seconds_count",
            &[r#"route="/tasks""#, r#"method="other""#, r#"status="405""#]
        ),
        Some(3.0),
        "{text}"
    );
    let submits = [r#"route="/tasks""#, r#"method="POST""#, r#"status="202""#];
    assert_eq!(
        sample(
            &text,
            "http_server_request_duration_seconds_count",
            &submits
        ),
        Some(6.0),
        "{text}"
    );
    // Routes are patterns, not paths: every poll of every task is one series.
    let polls = [r#"route="/tasks/{id}""#, r#"method="GET""#];
    assert!(
        sample(&text, "http_server_request_duration_seconds_count", &polls).unwrap_or(0.0) >= 6.0,
        "{text}"
    );
    assert!(
        text.contains("# TYPE http_server_request_duration_seconds histogram"),
        "{text}"
    );
    assert_eq!(
        sample(&text, "weir_tasks", &[r#"state="succeeded""#]),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "weir_tasks", &[r#"state="queued""#]),
        Some(0.0),
        "{text}"
    );
    // What the unrun-type alert reads: the one worker runs md5, and no
    // md5 task is queued (a type shows while queued or run).
    assert_eq!(
        sample(&text, "weir_task_type_workers", &[r#"type="md5""#]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "weir_task_type_queued", &[r#"type="md5""#]),
        None,
        "{text}"
    );
}

async fn submit(http: &reqwest::Client, api: &str, body: &Value) -> String {
    let resp = http
        .post(format!("{api}/tasks"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    body["task_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_log_lines_carry_the_request_id_as_json() {
    let db = SharedDb::create(StoreKind::Sqlite).await;
    let (api_process, line) = WeirProcess::start_logging(
        &[
            "api",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db.url,
            "--log-format",
            "json",
        ],
        "weir_api=debug",
        "listening on",
    );
    let api = listening_url(&line);
    let logs = api_process.logs.as_ref().expect("logs kept");

    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{api}/tasks/stats"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-me-42");
    // Without one, the API makes one up (a per-process prefix and a
    // counter) and answers with it; no two alike.
    let mut made_up = Vec::new();
    for _ in 0..2 {
        let resp = http.get(format!("{api}/tasks/stats")).send().await.unwrap();
        made_up.push(resp.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    assert!(made_up.iter().all(|id| id.len() >= 18), "{made_up:?}");
    assert_ne!(made_up[0], made_up[1]);

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let found = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(l) = logs.recv_timeout(left) else {
            break None;
        };
        let Ok(event) = serde_json::from_str::<Value>(&l) else {
            continue;
        };
        if event["span"]["request_id"] == "trace-me-42" {
            break Some(event);
        }
    };
    drop(api_process);
    let event = found.expect("a JSON log line with the request id");
    assert_eq!(event["fields"]["message"], "answered", "{event}");
    assert_eq!(event["fields"]["status"], 200, "{event}");
    assert_eq!(event["span"]["path"], "/tasks/stats", "{event}");
}
