//! The example binary works `slugify` tasks from a store it shares, and
//! leaves every other type alone.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use weir_core::{TaskId, TaskInsertParams, TaskState, TaskType};

fn params(kind: &str, input: serde_json::Value) -> TaskInsertParams {
    let now = Utc::now();
    TaskInsertParams {
        id: TaskId::new(),
        kind: TaskType::new(kind).unwrap(),
        input,
        max_attempts: 3,
        priority: 0,
        cache_key: None,
        run_at: now,
        now,
        queue: "default".into(),
        concurrency_key: None,
        backoff: None,
        timeout: None,
        tenant: None,
        trace: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_custom_worker_runs_its_own_type_from_the_shared_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("weir.db").display());
    let store = weir_store_sql::open_shared(&weir_store_sql::StoreOptions::new(url.clone()))
        .await
        .unwrap();
    let slug = store
        .task_insert(params("slugify", json!({"title": "Hello, World! 2026"})))
        .await
        .unwrap();
    let bad = store
        .task_insert(params("slugify", json!({"title": 5})))
        .await
        .unwrap();
    let other = store
        .task_insert(params("md5", json!({"string": "x"})))
        .await
        .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_custom-handler"))
        .env("WEIR_DATABASE_URL", &url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("running slugify"), "{first}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let (done, dead) = loop {
        let done = store.task_get(slug.id).await.unwrap().unwrap();
        let dead = store.task_get(bad.id).await.unwrap().unwrap();
        if done.state.is_final() && dead.state.is_final() {
            break (done, dead);
        }
        assert!(Instant::now() < deadline, "not worked: {done:?} {dead:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(
        done.result,
        Some(json!({"slug": "hello-world-2026", "attempt": 1}))
    );
    assert_eq!((dead.state, dead.attempts), (TaskState::Dead, 1));
    let untouched = store.task_get(other.id).await.unwrap().unwrap();
    assert_eq!(
        untouched.state,
        TaskState::Queued,
        "md5 is not this worker's"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success());
    let last: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        last.iter()
            .any(|l| l.contains("stopped: 1 succeeded, 1 failed")),
        "{last:?}"
    );
}
