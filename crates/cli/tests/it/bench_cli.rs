//! `weir bench <url>`: the load generator against a real stack and a slow
//! upstream, read through its `--json` report.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use weir_bench::upstream::{self, UpstreamSpec};

use crate::support::{Stack, StackOptions, StoreKind};

fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "weir bench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_scenarios_count_answers_statuses_and_node_shares() {
    let stack = Stack::start(StackOptions::on(StoreKind::Sqlite)).await;
    let base = stack.base.clone();

    let hello = tokio::task::spawn_blocking({
        let base = base.clone();
        move || bench(&[&base, "--scenario", "hello", "-n", "300", "-c", "6"])
    })
    .await
    .unwrap();
    assert_eq!(hello["requests"], 300, "{hello}");
    assert_eq!(hello["statuses"]["200"], 300, "{hello}");
    assert_eq!(hello["errors"], 0, "{hello}");
    // Three API nodes behind round robin: each answered its share.
    let nodes = hello["nodes"].as_object().unwrap();
    assert_eq!(nodes.len(), 3, "{hello}");
    assert!(nodes.values().all(|n| n.as_u64().unwrap() >= 60), "{hello}");
    assert!(
        hello["latency"]["p999_ms"].as_f64().unwrap()
            >= hello["latency"]["p50_ms"].as_f64().unwrap()
    );

    let tasks = tokio::task::spawn_blocking({
        let base = base.clone();
        move || bench(&[&base, "--scenario", "tasks", "-n", "40", "-c", "4"])
    })
    .await
    .unwrap();
    assert_eq!(tasks["requests"], 40, "{tasks}");
    assert_eq!(tasks["statuses"]["200"], 40, "{tasks}");
    let (_, stats) = stack.get_json("/tasks/stats").await;
    assert_eq!(stats["succeeded"], 40, "every task ran to its end: {stats}");

    let ingest = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            bench(&[
                &base,
                "--scenario",
                "ingest",
                "-n",
                "12",
                "-c",
                "3",
                "--batch",
                "50",
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(ingest["statuses"]["202"], 12, "{ingest}");
    assert!(ingest["events_per_sec"].as_f64().unwrap() > 0.0, "{ingest}");
    let (_, count) = stack.get_json("/messages/count").await;
    assert_eq!(count["count"], 600, "{count}");

    // Plain: method, header and body as given, here a malformed submission.
    let bad = tokio::task::spawn_blocking({
        let url = format!("{base}/tasks");
        move || {
            bench(&[
                &url,
                "-m",
                "POST",
                "-H",
                "content-type: application/json",
                "--body",
                "{\"type\":1}",
                "-n",
                "5",
                "-c",
                "1",
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(bad["statuses"]["400"], 5, "{bad}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_open_model_counts_a_stall_from_each_requests_due_time() {
    // An upstream taking 40 ms per answer, loaded on one connection at
    // 100 requests/s: requests queue behind each other. The open model must
    // show that queueing; the closed model only sees 40 ms.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spec = UpstreamSpec {
        listen: "127.0.0.1:0".parse().unwrap(),
        delay: Duration::from_millis(40),
        error_per_mille: 0,
        capacity: None,
    };
    tokio::spawn(upstream::run(spec, move |addr| {
        let _ = tx.send(addr);
    }));
    let url = format!("http://{}/", rx.await.unwrap());

    let open = tokio::task::spawn_blocking({
        let url = url.clone();
        move || bench(&[&url, "--rate", "100", "-d", "1s", "-c", "1"])
    })
    .await
    .unwrap();
    // Every scheduled request was sent (about rate × duration) and answered.
    let sent = open["requests"].as_u64().unwrap();
    assert!((95..=101).contains(&sent), "{open}");
    let closed = tokio::task::spawn_blocking(move || bench(&[&url, "-n", "20", "-c", "1"]))
        .await
        .unwrap();
    let closed_p50 = closed["latency"]["p50_ms"].as_f64().unwrap();
    let open_p99 = open["latency"]["p99_ms"].as_f64().unwrap();
    assert!(closed_p50 >= 40.0, "{closed}");
    // 100 due in a second, 25 served per second: the last waited ~3 s.
    assert!(
        open_p99 > 1000.0,
        "open p99 {open_p99} ms hides the stall: {open}"
    );

    // A refused connection is an error of its kind, not a hang.
    let refused =
        tokio::task::spawn_blocking(|| bench(&["http://127.0.0.1:9/", "-n", "3", "-c", "1"]))
            .await
            .unwrap();
    assert_eq!(refused["error_kinds"]["connect"], 3, "{refused}");
}
