//! A power cut, not just a crash: `weir up` (SQLite) with its data
//! directory on a filesystem that keeps every write since the last fsync in
//! memory (`scripts/lazyfs.py`), four clients submitting tasks and event
//! batches; weir is killed, the unsynced writes are dropped, weir restarts
//! on what was synced. With `--sqlite-synchronous full` (the default) every
//! task and event answered 202 is there exactly once; with `normal` the last
//! commits are lost — which shows the test can see a loss.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use weir_testkit::lazy_fs::LazyFs;
use weir_testkit::set_check::{SetHistory, SetVerdict};

use crate::processes::{listening_url, WeirProcess};
use crate::support::poll;

fn start_up(data_dir: &std::path::Path, synchronous: &str) -> (WeirProcess, String) {
    let data_dir = data_dir.display().to_string();
    let (up, line) = WeirProcess::start(
        &[
            "up",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir,
            "--sqlite-synchronous",
            synchronous,
            // Nothing runs: the queue is what is checked.
            "--workers",
            "0",
        ],
        "lb listening on",
    );
    (up, listening_url(&line))
}

async fn client(
    base: String,
    c: usize,
    stop: Arc<AtomicBool>,
    tasks: Arc<SetHistory>,
    events: Arc<SetHistory>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("t{c}-{n}");
        let task = json!({"type": "noop", "input": {"key": key}});
        match http.post(format!("{base}/tasks")).json(&task).send().await {
            Ok(r) if r.status() == 202 => tasks.acknowledged(key),
            _ => tasks.indeterminate(key),
        }
        let ids: Vec<String> = (0..5).map(|i| format!("e{c}-{n}-{i}")).collect();
        let body: String = ids
            .iter()
            .map(|id| format!("{{\"id\":\"{id}\"}}\n"))
            .collect();
        let sent = http
            .post(format!("{base}/write"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await;
        let acked = matches!(&sent, Ok(r) if r.status() == 202);
        for id in ids {
            if acked {
                events.acknowledged(id);
            } else {
                events.indeterminate(id);
            }
        }
        n += 1;
    }
}

/// Runs the load, cuts the power, restarts, and checks what survived.
async fn cut_power_under_load(synchronous: &str) -> (SetVerdict, SetVerdict) {
    let mut disk = LazyFs::mount();
    let (up, base) = start_up(disk.path(), synchronous);
    let stop = Arc::new(AtomicBool::new(false));
    let (tasks, events) = (
        Arc::new(SetHistory::default()),
        Arc::new(SetHistory::default()),
    );
    let clients: Vec<_> = (0..4)
        .map(|c| {
            tokio::spawn(client(
                base.clone(),
                c,
                stop.clone(),
                tasks.clone(),
                events.clone(),
            ))
        })
        .collect();
    poll(Duration::from_secs(120), || async {
        (tasks.acknowledged_count() >= 150).then_some(())
    })
    .await;
    up.kill();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    disk.cut_power();

    // weir starts on what was synced (SQLite replays its log), and stops
    // cleanly; then the file is read.
    let (mut up, _) = start_up(disk.path(), synchronous);
    // SIGTERM is handled once weir says it is ready.
    up.wait_line("ready");
    up.terminate();
    let url = format!("sqlite://{}?mode=ro", disk.path().join("weir.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let stored_tasks: Vec<String> =
        sqlx::query_scalar("SELECT json_extract(input, '$.key') FROM tasks")
            .fetch_all(&pool)
            .await
            .unwrap();
    let stored_events: Vec<String> = sqlx::query_scalar("SELECT id FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    (tasks.check(stored_tasks), events.check(stored_events))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_loses_nothing_acknowledged_with_synchronous_full() {
    let (tasks, events) = cut_power_under_load("full").await;
    eprintln!("synchronous=full: tasks {tasks}; events {events}");
    assert!(tasks.valid(), "tasks: {tasks}");
    assert!(events.valid(), "events: {events}");
}

/// The same cut under `normal`: acknowledged commits are lost. Were they
/// not, the test above could not fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_loses_acknowledged_commits_with_synchronous_normal() {
    let (tasks, events) = cut_power_under_load("normal").await;
    eprintln!("synchronous=normal: tasks {tasks}; events {events}");
    assert!(
        !tasks.lost.is_empty() || !events.lost.is_empty(),
        "nothing lost under normal: tasks {tasks}; events {events}"
    );
}
