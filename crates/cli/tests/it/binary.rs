//! The real binary: `weir up` starts, answers, and on SIGTERM finishes the
//! request in flight and exits 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::poll;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_up_serves_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--delay-ms",
            "1000",
            "--admin-token",
            "t",
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read what it prints until the lb's address appears.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    let base = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("weir up printed no lb address");
        printed.push(line.clone());
        if let Some(addr) = line.strip_prefix("weir: lb listening on ") {
            break addr.split_whitespace().next().unwrap().to_string();
        }
    };
    while !printed.iter().any(|l| l.contains("ready")) {
        printed.push(rx.recv_timeout(Duration::from_secs(60)).unwrap());
    }
    assert_eq!(
        printed
            .iter()
            .filter(|l| l.contains("api-") && l.contains("listening"))
            .count(),
        3,
        "{printed:?}"
    );
    assert!(
        printed.iter().any(|l| l.contains("3 workers")),
        "{printed:?}"
    );
    assert!(data_dir.join("weir.db").exists());

    // A slow request is in flight when SIGTERM arrives; it must still complete.
    let http = reqwest::Client::new();
    let in_flight = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move { http.get(format!("{base}/?message=last")).send().await }
    });
    poll(Duration::from_secs(10), || async {
        let stats: serde_json::Value = http
            .get(format!("{base}/lb/stats"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let busy: u64 = stats["backends"]
            .as_array()?
            .iter()
            .map(|b| b["in_flight"].as_u64().unwrap_or(0))
            .sum();
        (busy > 0).then_some(())
    })
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let resp = in_flight
        .await
        .unwrap()
        .expect("in-flight request was dropped");
    assert_eq!(resp.status(), 200);
    assert!(resp
        .text()
        .await
        .unwrap()
        .starts_with("Written to DB by node api-"));
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0), "weir up did not exit cleanly");
    // The row of the last request is in the store.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", data_dir.join("weir.db").display()))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE message = 'last'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 1);
}
