//! The fault test: 5,000 tasks of mixed types while workers are killed with
//! SIGKILL at random moments and replaced. At the end every task is finished —
//! succeeded, or dead exactly where a flaky task ran out of attempts — none
//! lost, none stuck, every result right. On SQLite and on PostgreSQL.

use std::collections::HashMap;
use std::process::Command;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use md5::{Digest, Md5};
use rand::Rng;
use serde_json::{json, Value};

use crate::processes::{listening_url, WeirProcess};
use crate::support::{poll, SharedDb, StoreKind};

const TASKS: usize = 5_000;

/// A worker on `url` with short leases, so a killed one's tasks come back fast.
pub(crate) fn worker_args<'a>(id: &'a str, url: &'a str) -> Vec<&'a str> {
    vec![
        "worker",
        "--worker-id",
        id,
        "--database-url",
        url,
        "--no-migrate",
        "--concurrency",
        "8",
        "--lease",
        "1s",
        "--rescue-interval",
        "300ms",
        "--poll-interval",
        "100ms",
    ]
}

/// What a task was asked to do.
fn submission(i: usize) -> Value {
    match i % 5 {
        0 => json!({"type": "md5", "input": {"string": format!("chaos-{i}")}, "max_attempts": 10}),
        1 => {
            json!({"type": "sha256", "input": {"string": format!("chaos-{i}")}, "max_attempts": 10})
        }
        2 => {
            json!({"type": "argon2", "input": {"string": format!("pw-{i}"), "memory_kib": 8, "iterations": 1}, "max_attempts": 10})
        }
        3 => json!({"type": "sleep", "input": {"ms": (i % 7) * 10}, "max_attempts": 10}),
        // Some flaky tasks cannot succeed within their attempts: they must end dead.
        _ if i % 25 == 4 => json!({"type": "flaky", "input": {"fail_times": 5}, "max_attempts": 2}),
        _ => json!({"type": "flaky", "input": {"fail_times": i % 3}, "max_attempts": 10}),
    }
}

/// The store at `url` migrated, and one API node on it with its URL.
pub(crate) fn migrated_api(url: &str) -> (WeirProcess, String) {
    assert!(Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["migrate", "--database-url", url])
        .status()
        .unwrap()
        .success());
    let (api, line) = WeirProcess::start(
        &[
            "api",
            "--listen",
            "127.0.0.1:0",
            "--node-id",
            "api-1",
            "--database-url",
            url,
            "--no-migrate",
        ],
        "listening on",
    );
    (api, listening_url(&line))
}

/// Three workers on a store, one of them SIGKILLed every 200–700 ms and
/// replaced by a fresh one, until [`WorkerChaos::stop`].
pub(crate) struct WorkerChaos {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<(Vec<WeirProcess>, usize)>,
}

impl WorkerChaos {
    pub(crate) fn start(url: &str) -> WorkerChaos {
        let url = url.to_string();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut generation = 0;
            let spawn = |generation: &mut usize| {
                *generation += 1;
                let id = format!("w{generation}");
                WeirProcess::start(&worker_args(&id, &url), "running up to").0
            };
            let mut workers: Vec<WeirProcess> = (0..3).map(|_| spawn(&mut generation)).collect();
            let mut kills = 0;
            let mut rng = rand::thread_rng();
            // Paced by waiting for the stop signal a random while.
            while let Err(RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Duration::from_millis(rng.gen_range(200..700)))
            {
                let victim = rng.gen_range(0..workers.len());
                workers.swap_remove(victim).kill();
                kills += 1;
                workers.push(spawn(&mut generation));
            }
            (workers, kills)
        });
        WorkerChaos { stop, thread }
    }

    /// Stops killing; the workers left running, and how many were killed.
    pub(crate) fn stop(self) -> (Vec<WeirProcess>, usize) {
        let _ = self.stop.send(());
        self.thread.join().unwrap()
    }
}

async fn tasks_survive_workers_killed_at_random(store: StoreKind) {
    let db = SharedDb::create(store).await;
    let url = db.url.clone();
    let (api, base) = migrated_api(&url);
    // Workers die and are replaced while tasks arrive and run.
    let chaos = WorkerChaos::start(&url);

    let http = reqwest::Client::new();
    let ids: Vec<(usize, String)> = stream::iter(0..TASKS)
        .map(|i| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let resp = http
                    .post(format!("{base}/tasks"))
                    .json(&submission(i))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 202);
                let body: Value = resp.json().await.unwrap();
                (i, body["task_id"].as_str().unwrap().to_string())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    // Keep killing while the backlog drains, then let the survivors finish.
    let counts_url = url.clone();
    let pending = move || {
        let url = counts_url.clone();
        async move {
            let store = weir_store_sql::open_shared(&{
                let mut o = weir_store_sql::StoreOptions::new(url);
                o.migrate = false;
                o
            })
            .await
            .ok()?;
            store.task_counts().await.ok().map(|c| c.pending())
        }
    };
    poll(Duration::from_secs(60), || async {
        pending()
            .await
            .filter(|n| *n < TASKS as i64 / 2)
            .map(|_| ())
    })
    .await;
    let (survivors, kills) = chaos.stop();
    assert!(kills >= 3, "only {kills} workers were killed");
    poll(Duration::from_secs(120), || async {
        pending().await.filter(|n| *n == 0).map(|_| ())
    })
    .await;

    // Every task finished, with the right result.
    let tasks: Vec<(usize, Value)> = stream::iter(ids)
        .map(|(i, id)| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                (
                    i,
                    http.get(format!("{base}/tasks/{id}"))
                        .send()
                        .await
                        .unwrap()
                        .json::<Value>()
                        .await
                        .unwrap(),
                )
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut by_status: HashMap<String, usize> = HashMap::new();
    for (i, t) in &tasks {
        let status = t["status"].as_str().unwrap().to_string();
        *by_status.entry(status.clone()).or_default() += 1;
        let attempts = t["attempts"].as_i64().unwrap();
        if i % 25 == 4 {
            assert_eq!(status, "dead", "task {i}: {t}");
            assert_eq!(attempts, 2, "task {i}: {t}");
            continue;
        }
        assert_eq!(status, "succeeded", "task {i}: {t}");
        assert!((1..=10).contains(&attempts), "task {i}: {t}");
        match i % 5 {
            0 => assert_eq!(
                t["result"]["md5"],
                hex::encode(Md5::digest(format!("chaos-{i}"))),
                "task {i}"
            ),
            2 => assert!(
                t["result"]["argon2"]
                    .as_str()
                    .unwrap()
                    .starts_with("$argon2id$"),
                "task {i}"
            ),
            4 => {
                // It succeeded only after failing on purpose fail_times times.
                let on = t["result"]["succeeded_on_attempt"].as_i64().unwrap();
                assert!(on > (i % 3) as i64 && on == attempts, "task {i}: {t}");
            }
            _ => {}
        }
    }
    let dead = (0..TASKS).filter(|i| i % 25 == 4).count();
    assert_eq!(by_status.get("dead"), Some(&dead), "{by_status:?}");
    assert_eq!(
        by_status.get("succeeded"),
        Some(&(TASKS - dead)),
        "{by_status:?}"
    );
    for w in survivors {
        w.terminate();
    }
    api.terminate();
}

crate::for_each_store!(tasks_survive_workers_killed_at_random);
