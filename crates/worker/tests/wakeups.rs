//! A worker claims when woken, not on every task's end: so a task a limit
//! held back (a concurrency key's, a limited queue's) must be claimed when
//! the task holding its slot ends, without waiting for a poll. The polls
//! here are a minute apart: only wake-ups can finish these in time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use weir_core::{QueueLimits, Store, TaskId, TaskState, TaskTypes};
use weir_store::{Submission, Submitted, Submitter};
use weir_worker::{Handlers, WorkerConfig};

const TASKS: usize = 6;

async fn store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("weir.db").display());
    let store = weir_store_sql::open_shared(&weir_store_sql::StoreOptions::new(url))
        .await
        .unwrap();
    (store, dir)
}

/// Submits `TASKS` noop tasks shaped by `shape`, then runs a worker
/// polling once a minute and waits for every task to succeed. Submitted
/// first, so no insert's wake-up can stand in for a completion's.
async fn run_all(store: Arc<dyn Store>, shape: impl Fn(&mut Submission)) {
    let types = Arc::new(TaskTypes::default());
    let submitter = Submitter::new(store.clone(), types.clone(), 3, Duration::ZERO);
    let mut ids: Vec<TaskId> = Vec::new();
    for i in 0..TASKS {
        let mut s = Submission::new("noop", json!({ "n": i }));
        shape(&mut s);
        match submitter.submit(s).await.unwrap() {
            Submitted::Queued { task_id, .. } => ids.push(task_id),
            other => panic!("not queued: {other:?}"),
        }
    }
    let mut config = WorkerConfig::new("wakeups-worker");
    config.task_types = types.clone();
    config.handlers = Handlers::from_types(&types).unwrap();
    config.poll_interval = Duration::from_secs(60);
    config.concurrency = 4;
    let stop = CancellationToken::new();
    let worker = tokio::spawn(weir_worker::run(store.clone(), config, stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut left = Vec::new();
        for id in &ids {
            let task = store.task_get(*id).await.unwrap().unwrap();
            if task.state != TaskState::Succeeded {
                left.push((task.id, task.state));
            }
        }
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not run after 20 s (polls are a minute apart): {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_sharing_a_key_run_back_to_back_without_polls() {
    let (store, _dir) = store().await;
    run_all(store, |s| s.concurrency_key = Some("one-at-a-time".into())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_limited_to_one_runs_its_tasks_back_to_back_without_polls() {
    let (store, _dir) = store().await;
    store
        .queue_configure(&QueueLimits {
            name: "narrow".into(),
            concurrency: Some(1),
            rate_per_second: None,
            burst: None,
            paused: false,
        })
        .await
        .unwrap();
    run_all(store, |s| s.queue = Some("narrow".into())).await;
}
