//! A full disk costs nothing acknowledged: `weir up` (SQLite) with its data
//! directory on a 6 MB tmpfs, four clients submitting 60 KB tasks and event
//! batches until the disk is full. Every 202 is stored, every refusal is a
//! 507 `disk_full` (never a 202 for a row not stored, never a 500), and what
//! was refused is not stored. Once the disk grows, submissions are accepted
//! again and the workers finish every acknowledged task, without a restart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use weir_testkit::set_check::SetHistory;
use weir_testkit::small_disk::SmallDisk;

use crate::binary::start_up;
use crate::support::poll;

const PAD: usize = 60_000;

/// What the clients were answered.
#[derive(Default)]
struct Answers {
    by_status: Mutex<BTreeMap<u16, usize>>,
    /// Answers other than 202, 507 `disk_full`, or 503 with Retry-After.
    wrong: Mutex<Vec<String>>,
    full: AtomicUsize,
}

#[derive(Clone)]
struct Load {
    http: reqwest::Client,
    base: String,
    stop: Arc<AtomicBool>,
    answers: Arc<Answers>,
    tasks: Arc<SetHistory>,
    events: Arc<SetHistory>,
}

impl Load {
    /// Sends `req`; records every element of `ids` by how it was answered.
    /// A 507 says nothing was stored: its elements are recorded nowhere, so
    /// the set checker finds them if they were stored after all.
    async fn send(&self, req: reqwest::RequestBuilder, history: &SetHistory, ids: &[String]) {
        let (status, retry_after, body) = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp.headers().contains_key("retry-after");
                (status, retry_after, resp.text().await.unwrap_or_default())
            }
            Err(_) => (0, false, String::new()),
        };
        *self
            .answers
            .by_status
            .lock()
            .unwrap()
            .entry(status)
            .or_default() += 1;
        let code = serde_json::from_str::<Value>(&body).unwrap_or_default()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match status {
            202 => ids.iter().for_each(|id| history.acknowledged(id.clone())),
            507 if code == "disk_full" && retry_after => {
                self.answers.full.fetch_add(1, Ordering::Relaxed);
            }
            503 if retry_after => ids.iter().for_each(|id| history.indeterminate(id.clone())),
            _ => {
                ids.iter().for_each(|id| history.indeterminate(id.clone()));
                self.answers
                    .wrong
                    .lock()
                    .unwrap()
                    .push(format!("{status} (retry-after {retry_after}): {body}"));
            }
        }
    }

    async fn submit_task(&self, key: &str) {
        let req = self
            .http
            .post(format!("{}/hash/md5", self.base))
            .json(&json!({"string": format!("{key}:{}", "x".repeat(PAD))}));
        self.send(req, &self.tasks, &[key.to_string()]).await;
    }

    async fn submit_events(&self, prefix: &str) {
        let ids: Vec<String> = (0..10).map(|i| format!("{prefix}-{i}")).collect();
        let body: String = ids
            .iter()
            .map(|id| format!("{{\"id\":\"{id}\",\"pad\":\"{}\"}}\n", "y".repeat(2_000)))
            .collect();
        let req = self
            .http
            .post(format!("{}/write", self.base))
            .header("content-type", "application/x-ndjson")
            .body(body);
        self.send(req, &self.events, &ids).await;
    }
}

async fn client(load: Load, c: usize) {
    let mut n = 0;
    while !load.stop.load(Ordering::Relaxed) {
        load.submit_task(&format!("t{c}-{n}")).await;
        load.submit_events(&format!("e{c}-{n}")).await;
        n += 1;
    }
}

/// Task keys (the part of the md5 input before `:`) and event ids stored.
async fn stored(db: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let url = format!("sqlite://{}?mode=ro", db.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let inputs: Vec<String> =
        sqlx::query_scalar("SELECT json_extract(input, '$.string') FROM tasks")
            .fetch_all(&pool)
            .await
            .unwrap();
    let keys = inputs
        .iter()
        .map(|s| s.split(':').next().unwrap_or_default().to_string())
        .collect();
    let events = sqlx::query_scalar("SELECT id FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    (keys, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_507_loses_nothing_acknowledged_and_recovers() {
    let disk = SmallDisk::mount("6m");
    let (up, base) = start_up(disk.path());
    let load = Load {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        base,
        stop: Arc::new(AtomicBool::new(false)),
        answers: Arc::default(),
        tasks: Arc::default(),
        events: Arc::default(),
    };
    let clients: Vec<_> = (0..4)
        .map(|c| tokio::spawn(client(load.clone(), c)))
        .collect();
    poll(Duration::from_secs(90), || async {
        (load.answers.full.load(Ordering::Relaxed) >= 40).then_some(())
    })
    .await;
    load.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let statuses = load.answers.by_status.lock().unwrap().clone();
    eprintln!("answers while the disk filled: {statuses:?}");
    let wrong = load.answers.wrong.lock().unwrap().clone();
    assert!(
        wrong.is_empty(),
        "{} wrong answers: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(load.tasks.acknowledged_count() > 0, "{statuses:?}");

    let db = disk.path().join("weir.db");
    let (task_keys, event_ids) = stored(&db).await;
    let verdict = load.tasks.check(task_keys);
    assert!(verdict.valid(), "tasks: {verdict}");
    let verdict = load.events.check(event_ids);
    assert!(verdict.valid(), "events: {verdict}");

    // Space freed: accepted again, without a restart, and every
    // acknowledged task is worked.
    disk.resize("64m");
    poll(Duration::from_secs(30), || async {
        let before = load.tasks.acknowledged_count();
        load.submit_task("after-0").await;
        (load.tasks.acknowledged_count() > before).then_some(())
    })
    .await;
    load.submit_events("after-events").await;
    let wrong = load.answers.wrong.lock().unwrap().clone();
    assert!(wrong.is_empty(), "after the disk grew: {wrong:?}");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .unwrap();
    poll(Duration::from_secs(90), || async {
        let unfinished: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tasks WHERE state <> 'succeeded'")
                .fetch_one(&pool)
                .await
                .ok()?;
        (unfinished == 0).then_some(())
    })
    .await;
    pool.close().await;
    let (task_keys, event_ids) = stored(&db).await;
    assert!(load.tasks.check(task_keys).valid());
    assert!(load.events.check(event_ids).valid());
    up.terminate();
}
