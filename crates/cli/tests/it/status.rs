//! `weir status`: the cluster at a glance, with verdicts.

use serde_json::json;

use std::time::Duration;

use weir::status::Source;

use crate::support::{poll, Stack, StackOptions, StoreKind};

async fn status_shows_nodes_workers_tasks_and_a_balance_verdict(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    for i in 0..30 {
        let resp = stack
            .http
            .get(stack.url(&format!("/?message=s{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let (_, accepted) = stack
        .post_json("/tasks", &json!({"type": "noop", "input": {}}))
        .await;
    stack.wait_task(accepted["task_id"].as_str().unwrap()).await;

    let status = poll(Duration::from_secs(10), || async {
        let s = weir::status::collect(&Source::Lb(stack.base.clone()), Duration::ZERO)
            .await
            .ok()?;
        (s.tasks["succeeded"] == 1).then_some(s)
    })
    .await;
    assert_eq!(status.strategy, "round_robin");
    assert_eq!(status.nodes.len(), 3);
    // The lb learned each node's own name from its answers.
    let mut names: Vec<&str> = status
        .nodes
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["api-1", "api-2", "api-3"]);
    assert_eq!(status.workers.len(), 3);
    assert!(
        status
            .verdicts
            .iter()
            .any(|v| v.starts_with("nodes: balanced")),
        "{:?}",
        status.verdicts
    );
    assert!(
        status
            .verdicts
            .iter()
            .any(|v| v.starts_with("queue: 0 waiting")),
        "{:?}",
        status.verdicts
    );
    let text = weir::status::render(&status);
    assert!(
        text.contains("api-1") && text.contains("worker-1") && text.contains("succeeded 1"),
        "{text}"
    );
    assert!(
        text.contains("s ago"),
        "each worker's heartbeat age: {text}"
    );
    // The last minute: the task finished in it, the lb counted requests.
    assert!(status.tasks_per_second > 0.0, "{}", status.tasks_per_second);
    let requests = poll(Duration::from_secs(10), || async {
        let s = weir::status::collect(&Source::Lb(stack.base.clone()), Duration::ZERO)
            .await
            .ok()?;
        s.requests_per_second.filter(|r| *r > 0.0)
    })
    .await;
    assert!(requests > 0.0);

    // Read from the database instead: the same workers and tasks, nodes by
    // the requests they logged, no lb health.
    let store = weir_store_sql::open_shared(&weir_store_sql::StoreOptions::new(
        stack.database_url.clone(),
    ))
    .await
    .unwrap();
    let from_db = weir::status::collect(&Source::Store(store), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(from_db.source, "database");
    assert_eq!(from_db.workers.len(), 3);
    assert_eq!(from_db.tasks["succeeded"], 1);
    let logged: i64 = from_db
        .nodes
        .iter()
        .map(|n| n["requests"].as_i64().unwrap())
        .sum();
    assert!(logged >= 30, "{:?}", from_db.nodes);
    assert_eq!(from_db.nodes.len(), 3, "{:?}", from_db.nodes);
    assert!(
        !from_db.verdicts.iter().any(|v| v.contains("healthy")),
        "{:?}",
        from_db.verdicts
    );
    let text = weir::status::render(&from_db);
    assert!(text.starts_with("database"), "{text}");
    assert!(
        !text.contains("null"),
        "unknown figures are shown as -: {text}"
    );
    stack.stop().await;
}

crate::for_each_store!(status_shows_nodes_workers_tasks_and_a_balance_verdict);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_sees_the_queue_grow_when_every_worker_slot_is_busy() {
    let stack = Stack::start(StackOptions {
        workers: 1,
        worker_concurrency: 2,
        ..StackOptions::on(StoreKind::Sqlite)
    })
    .await;
    // Two long tasks hold both slots; then tasks keep arriving.
    for _ in 0..2 {
        stack
            .post_json("/tasks", &json!({"type": "sleep", "input": {"ms": 30_000}}))
            .await;
    }
    poll(Duration::from_secs(10), || async {
        let (_, t) = stack.get_json("/tasks/stats").await;
        (t["running"] == 2).then_some(())
    })
    .await;
    let feeding = tokio::spawn({
        let (http, url) = (stack.http.clone(), stack.url("/tasks"));
        async move {
            for i in 0..400 {
                let body = json!({"type": "sleep", "input": {"ms": 10 + i}});
                let _ = http.post(&url).json(&body).send().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    let status = weir::status::collect(&Source::Lb(stack.base.clone()), Duration::from_secs(1))
        .await
        .unwrap();
    feeding.abort();
    let trend = status.queue_trend_per_second.unwrap();
    assert!(trend > 5.0, "trend {trend}");
    assert!(
        status
            .verdicts
            .iter()
            .any(|v| v.starts_with("queue grows") && v.ends_with("add workers")),
        "{:?}",
        status.verdicts
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_a_queued_type_no_running_worker_can_run() {
    let mut types = weir_core::TaskTypes::default();
    types
        .insert(weir_core::TaskTypeConfig::parse_flag("py_resize=external").unwrap())
        .unwrap();
    let stack = Stack::start(StackOptions {
        workers: 1,
        task_types: Some(types),
        ..StackOptions::on(StoreKind::Sqlite)
    })
    .await;
    let (status, _) = stack
        .post_json("/tasks", &json!({"type": "py_resize", "input": {}}))
        .await;
    assert_eq!(status, 202);
    let (_, noop) = stack
        .post_json("/tasks", &json!({"type": "noop", "input": {}}))
        .await;
    stack.wait_task(noop["task_id"].as_str().unwrap()).await;
    let status = weir::status::collect(&Source::Lb(stack.base.clone()), Duration::ZERO)
        .await
        .unwrap();
    let problems: Vec<&String> = status
        .verdicts
        .iter()
        .filter(|v| v.starts_with("problem:"))
        .collect();
    assert_eq!(problems.len(), 1, "{:?}", status.verdicts);
    assert!(
        problems[0].contains("1 tasks of type py_resize"),
        "{problems:?}"
    );
    // Regression: a lost line continuation left a run of spaces mid-sentence.
    assert!(
        problems[0].contains("runs py_resize: start a worker"),
        "{problems:?}"
    );
    assert!(
        !status.verdicts.iter().any(|v| v.contains("type noop")),
        "{:?}",
        status.verdicts
    );
    stack.stop().await;
}
