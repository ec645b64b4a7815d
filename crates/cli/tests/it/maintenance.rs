//! Maintenance never stalls the work: the cleaner runs as a task of its
//! own, so a prune held up by a lock for seconds does not delay claims,
//! completions or heartbeats (it was awaited inside the claim loop).

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection;

use crate::processes::{
    listening_url, migrated_database, wait_all_succeeded_within, worker_row, WeirProcess,
};
use crate::support::poll;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_held_by_a_lock_delays_no_claim_or_heartbeat() {
    let (_db, url) = migrated_database().await;
    let node = ["--database-url", url.as_str(), "--no-migrate"];
    let (_api, line) = WeirProcess::start(
        &[&["api", "--listen", "127.0.0.1:0"][..], &node[..]].concat(),
        "listening on",
    );
    let base = listening_url(&line);
    // Another session holds a lock the prune's last delete needs.
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE event_keys IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let (_worker, _) = WeirProcess::start(
        &[
            &["worker", "--worker-id", "w-1", "--lease", "2s"][..],
            &["--maintenance-interval", "100ms"][..],
            &node[..],
        ]
        .concat(),
        "running up to",
    );
    // The leader's prune is now waiting on the lock.
    let watcher = sqlx::PgPool::connect(&url).await.unwrap();
    poll(Duration::from_secs(20), || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE query LIKE 'DELETE FROM event_keys%' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&watcher)
        .await
        .ok()?;
        (waiting > 0).then_some(())
    })
    .await;
    let blocked_since = Instant::now();
    let http = reqwest::Client::new();
    let worker = || worker_row(&http, &base, "w-1");
    let first_beat = worker().await.expect("the worker reports")["last_heartbeat_at"].clone();

    // While the prune waits: tasks are claimed and finished, heartbeats go on.
    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, body) = crate::processes::post_json(
            &format!("{base}/tasks"),
            &json!({"type": "noop", "input": {"n": i}}),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["task_id"].as_str().unwrap().to_string());
    }
    wait_all_succeeded_within(&base, &ids, Duration::from_secs(4)).await;
    poll(Duration::from_secs(2), || async {
        let beat = worker().await?["last_heartbeat_at"].clone();
        (beat != first_beat).then_some(())
    })
    .await;
    let still_waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE query LIKE 'DELETE FROM event_keys%' AND wait_event_type = 'Lock'",
    )
    .fetch_one(&watcher)
    .await
    .unwrap();
    assert_eq!(still_waiting, 1, "the prune should still be held");
    assert!(blocked_since.elapsed() < Duration::from_secs(6));
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
}
