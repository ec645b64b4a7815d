//! Workflows while workers die: 100 workflows — a fan-out of 20 into one
//! fan-in, then a chain of 3 — on PostgreSQL, with workers SIGKILLed at
//! random and replaced. Every workflow ends succeeded, every step started
//! only after each of its parents finished (from the stored timestamps),
//! nothing is left waiting, and every repeated attempt is one whose lease
//! was lost. Then the same checks on `weir up` (SQLite) SIGKILLed mid-run
//! and started again on its data.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::chaos::{migrated_api, WorkerChaos};
use crate::processes::{listening_url, WeirProcess};
use crate::support::{poll, SharedDb, StoreKind};

const WORKFLOWS: usize = 100;
const FAN_OUT: usize = 20;

/// Fan-out of `FAN_OUT` short sleeps into a join, then a chain of three.
fn workflow(n: usize) -> Value {
    let mut steps: Vec<Value> = (0..FAN_OUT)
        .map(|i| {
            json!({"id": format!("part-{i}"), "type": "sleep",
                   "input": {"ms": (n + i) % 4 * 10}, "max_attempts": 10})
        })
        .collect();
    let parts: Vec<String> = (0..FAN_OUT).map(|i| format!("part-{i}")).collect();
    steps.push(
        json!({"id": "join", "type": "md5", "input": {"string": format!("join-{n}")},
                      "depends_on": parts, "max_attempts": 10}),
    );
    let mut before = "join".to_string();
    for c in 1..=3 {
        let id = format!("chain-{c}");
        steps.push(json!({"id": id, "type": "sleep", "input": {"ms": 10},
                          "depends_on": [before], "max_attempts": 10}));
        before = id;
    }
    json!({"name": format!("chaos-{n}"), "steps": steps})
}

fn at(task: &Value, field: &str) -> DateTime<Utc> {
    task[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{field} missing: {task}"))
}

async fn workflows_survive_workers_killed_at_random(store: StoreKind) {
    let db = SharedDb::create(store).await;
    let (api, base) = migrated_api(&db.url);
    let chaos = WorkerChaos::start(&db.url);

    let http = reqwest::Client::new();
    let ids = submit_all(&http, &base, WORKFLOWS).await;
    let running = || running(&http, &base);
    // Kill while half of them run, then let the survivors finish the rest.
    poll(Duration::from_secs(90), || async {
        running()
            .await
            .filter(|n| *n <= WORKFLOWS as i64 / 2)
            .map(|_| ())
    })
    .await;
    let (survivors, kills) = chaos.stop();
    assert!(kills >= 3, "only {kills} workers were killed");
    poll(Duration::from_secs(120), || async {
        running().await.filter(|n| *n == 0).map(|_| ())
    })
    .await;

    let repeated = check_workflows(&http, &base, &ids).await;
    eprintln!("{kills} workers killed; {repeated} attempts repeated after a lost lease");
    for w in survivors {
        w.terminate();
    }
    api.terminate();
}

/// Every workflow succeeded; every step started after each of its parents
/// finished; every repeated attempt was a lost lease. Returns how many
/// attempts were repeated.
async fn check_workflows(http: &reqwest::Client, base: &str, ids: &[String]) -> usize {
    let mut repeated = 0;
    for id in ids {
        let w: Value = http
            .get(format!("{base}/workflows/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(w["status"], "succeeded", "{w}");
        let steps = w["steps"].as_array().unwrap();
        assert_eq!(steps.len(), FAN_OUT + 4);
        let tasks: HashMap<String, Value> = stream::iter(steps.iter().cloned())
            .map(|s| {
                let (http, base) = (http.clone(), base.to_string());
                async move {
                    let t: Value = http
                        .get(format!("{base}/tasks/{}", s["task_id"].as_str().unwrap()))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    (s["id"].as_str().unwrap().to_string(), t)
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for s in steps {
            let task = &tasks[s["id"].as_str().unwrap()];
            assert_eq!(task["status"], "succeeded", "{task}");
            for parent in s["depends_on"].as_array().unwrap() {
                let parent = &tasks[parent.as_str().unwrap()];
                assert!(
                    at(task, "started_at") >= at(parent, "completed_at"),
                    "{} started before its parent {} finished",
                    s["id"],
                    parent["id"]
                );
            }
            // These types never fail: an attempt was repeated only when a
            // worker died holding it, and each such attempt says so.
            let attempts = task["attempts"].as_i64().unwrap();
            let errors = task["errors"].as_array().unwrap();
            assert_eq!(errors.len() as i64, attempts - 1, "{task}");
            for e in errors {
                assert!(
                    e["error"].as_str().unwrap().starts_with("lease expired"),
                    "{task}"
                );
            }
            repeated += errors.len();
        }
    }
    repeated
}

/// Workflows still running, from `/tasks/stats` (None while it does not answer).
async fn running(http: &reqwest::Client, base: &str) -> Option<i64> {
    let stats: Value = http
        .get(format!("{base}/tasks/stats"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(stats["workflows"]["running"].as_i64().unwrap_or(0))
}

/// Submits `n` workflows; their ids.
async fn submit_all(http: &reqwest::Client, base: &str, n: usize) -> Vec<String> {
    stream::iter(0..n)
        .map(|n| {
            let (http, base) = (http.clone(), base.to_string());
            async move {
                let resp = http
                    .post(format!("{base}/workflows"))
                    .json(&workflow(n))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 202);
                let body: Value = resp.json().await.unwrap();
                body["workflow_id"].as_str().unwrap().to_string()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_survive_workers_killed_at_random_on_postgres() {
    workflows_survive_workers_killed_at_random(StoreKind::Postgres).await
}

/// `weir up` SIGKILLed mid-run and started again on the same data: every
/// acknowledged workflow still finishes, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_survive_weir_up_killed_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let args = [
        "up",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
        "--api-nodes",
        "1",
        "--workers",
        "1",
        "--worker-concurrency",
        "4",
        "--lease",
        "1s",
        "--rescue-interval",
        "300ms",
    ];
    let start = || {
        let (up, line) = WeirProcess::start(&args, "lb listening on");
        (up, listening_url(&line))
    };
    let http = reqwest::Client::new();
    let (up, base) = start();
    let ids = submit_all(&http, &base, 30).await;
    // Killed once some have finished and most have not.
    poll(Duration::from_secs(60), || async {
        running(&http, &base).await.filter(|n| *n < 28).map(|_| ())
    })
    .await;
    let left = running(&http, &base).await.unwrap_or(0);
    up.kill();
    assert!(left > 0, "every workflow finished before the kill");
    let (up, base) = start();
    poll(Duration::from_secs(120), || async {
        running(&http, &base).await.filter(|n| *n == 0).map(|_| ())
    })
    .await;
    let repeated = check_workflows(&http, &base, &ids).await;
    eprintln!("killed with {left} workflows running; {repeated} attempts repeated");
    up.terminate();
}
