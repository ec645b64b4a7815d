//! What orchestrators probe: `/health/live` and `/health/ready` on API
//! nodes and workers, `/lb/health/*` on the lb, and `weir health URL` (the
//! container's health check). Ready means: not draining, store answering.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::processes::{listening_url, migrated_database, WeirProcess};
use crate::support::poll;

async fn get(url: &str) -> Option<(u16, Value)> {
    let resp = reqwest::get(url).await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.unwrap_or(Value::Null)))
}

/// Polls `url` until it answers `status` (30 s at most); the body.
async fn until(url: &str, status: u16) -> Value {
    poll(Duration::from_secs(30), || async {
        get(url).await.filter(|(s, _)| *s == status).map(|(_, b)| b)
    })
    .await
}

/// `weir health URL`: whether it exited 0, and what it printed on stderr.
fn weir_health(url: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["health", url, "--timeout", "2s"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_lb_report_unready_from_sigterm_on_while_they_keep_serving() {
    let (_db, url) = migrated_database().await;
    let (api, line) = WeirProcess::start(
        &[
            "api",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &url,
            "--no-migrate",
            "--shutdown-delay",
            "4s",
        ],
        "listening on",
    );
    let api_url = listening_url(&line);
    let (lb, line) = WeirProcess::start(
        &[
            "lb",
            "--listen",
            "127.0.0.1:0",
            "--backends",
            &api_url,
            "--shutdown-delay",
            "4s",
        ],
        "listening on",
    );
    let lb_url = listening_url(&line);

    let ready = until(&format!("{api_url}/health/ready"), 200).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        until(&format!("{api_url}/health/live"), 200).await["status"],
        "live"
    );
    let ready = until(&format!("{lb_url}/lb/health/ready"), 200).await;
    assert_eq!(ready["available_backends"], 1, "{ready}");
    assert_eq!(
        until(&format!("{lb_url}/lb/health/live"), 200).await["status"],
        "live"
    );
    assert_eq!(
        weir_health(&format!("{api_url}/health/ready")),
        (true, String::new())
    );

    // The lb drains: not ready, still proxying.
    lb.send_term();
    let body = until(&format!("{lb_url}/lb/health/ready"), 503).await;
    assert_eq!(body["error"]["code"], "draining", "{body}");
    let (ok, why) = weir_health(&format!("{lb_url}/lb/health/ready"));
    assert!(!ok && why.contains("503"), "{why}");
    assert_eq!(
        get(&format!("{lb_url}/health")).await.map(|r| r.0),
        Some(200)
    );
    assert!(lb.wait_exit(), "the lb did not exit cleanly");

    // The API node drains: not ready, still live and serving.
    api.send_term();
    let body = until(&format!("{api_url}/health/ready"), 503).await;
    assert_eq!(body["error"]["code"], "draining", "{body}");
    assert_eq!(
        get(&format!("{api_url}/health/live")).await.map(|r| r.0),
        Some(200)
    );
    assert!(api.wait_exit(), "the API node did not exit cleanly");
    let (ok, why) = weir_health(&format!("{api_url}/health/ready"));
    assert!(!ok && !why.is_empty(), "a closed port passed: {why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_readiness_follows_its_store() {
    let (db, url) = migrated_database().await;
    let (worker, line) = WeirProcess::start(
        &[
            "worker",
            "--database-url",
            &url,
            "--no-migrate",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        "serving metrics on",
    );
    let base = listening_url(&line)
        .trim_end_matches("/metrics")
        .to_string();
    assert_eq!(
        until(&format!("{base}/health/ready"), 200).await["status"],
        "ready"
    );
    assert_eq!(
        until(&format!("{base}/health/live"), 200).await["status"],
        "live"
    );

    // The database goes away: not ready (naming why), still live.
    let mut admin = db.admin().await;
    sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", db.name()))
        .execute(&mut admin)
        .await
        .unwrap();
    let body = until(&format!("{base}/health/ready"), 503).await;
    assert_eq!(body["error"]["code"], "store_unreachable", "{body}");
    assert_eq!(
        get(&format!("{base}/health/live")).await.map(|r| r.0),
        Some(200)
    );
    worker.kill();
}

#[test]
fn check_config_starts_nothing_and_refuses_bad_settings() {
    let weir = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .output()
            .unwrap()
    };
    // Nothing is reached: the database URL points at a closed port.
    let out = weir(&[
        "api",
        "--check-config",
        "--database-url",
        "postgres://127.0.0.1:1/x",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration ok"));
    let out = weir(&["lb", "--check-config", "--backends", "ftp://nope"]);
    assert!(!out.status.success(), "a bad backend URL passed");
    let out = weir(&["worker", "--check-config", "--lease", "soon"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--lease"),
        "{stderr}"
    );
}
