//! Workers: every task runs exactly once, work is shared, and the registry shows it.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use crate::support::{poll, Stack, StackOptions, StoreKind};
use std::time::Duration;

async fn many_tasks_each_run_exactly_once_across_workers(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    let mut ids = Vec::new();
    for i in 0..300 {
        // A short sleep keeps every worker busy at once, so all of them claim.
        let body = if i % 3 == 0 {
            json!({"type": "sleep", "input": {"ms": 20}})
        } else {
            json!({"type": "md5", "input": {"string": format!("input-{i}")}})
        };
        let (status, accepted) = stack.post_json("/tasks", &body).await;
        assert_eq!(status, 202, "{accepted}");
        ids.push(accepted["task_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 300);

    let mut by_worker: HashMap<String, i64> = HashMap::new();
    for id in &ids {
        let task = stack.wait_task(id).await;
        assert_eq!(task["status"], "succeeded", "{task}");
        assert_eq!(task["attempts"], 1, "task ran more than once: {task}");
        *by_worker
            .entry(task["worker_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        by_worker.len(),
        3,
        "every worker should take a share: {by_worker:?}"
    );

    // The registry's counts reach the same total once the next heartbeats land.
    let workers = poll(Duration::from_secs(10), || async {
        let (_, body) = stack.get_json("/workers").await;
        let workers = body["workers"].as_array().unwrap().clone();
        let processed: i64 = workers
            .iter()
            .map(|w| w["processed"].as_i64().unwrap())
            .sum();
        (processed == 300).then_some(workers)
    })
    .await;
    for w in &workers {
        assert_eq!(w["status"], "online", "{w}");
        assert_eq!(w["concurrency"], 4);
        assert_eq!(w["failed"], 0);
        assert!(w["last_heartbeat_at"].is_string());
        assert_eq!(
            w["processed"].as_i64().unwrap(),
            by_worker[w["id"].as_str().unwrap()]
        );
    }
    stack.stop().await;
}

async fn workers_show_running_tasks_and_go_offline_on_shutdown(store: StoreKind) {
    let stack = Stack::start(StackOptions {
        store,
        workers: 1,
        ..StackOptions::default()
    })
    .await;
    let (_, accepted) = stack
        .post_json("/tasks", &json!({"type": "sleep", "input": {"ms": 1500}}))
        .await;
    let id = accepted["task_id"].as_str().unwrap().to_string();
    let worker = poll(Duration::from_secs(10), || async {
        let (_, body) = stack.get_json("/workers").await;
        let w = body["workers"][0].clone();
        (w["current_task"] == id.as_str()).then_some(w)
    })
    .await;
    assert_eq!(worker["active_tasks"], 1);
    assert_eq!(worker["id"], "worker-1");

    // Shutdown drains: the running task finishes rather than being lost.
    let store = stack.store.clone();
    let _dir = stack.stop().await;
    let task = store.task_get(id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(task.state, weir_core::TaskState::Succeeded);
    let workers = store.worker_list().await.unwrap();
    assert_eq!(workers[0].status, weir_core::WorkerStatus::Offline);
}

async fn finished_tasks_are_deleted_after_the_retention(store: StoreKind) {
    let stack = Stack::start(StackOptions {
        store,
        retention: Some(Duration::ZERO),
        maintenance_interval: Some(Duration::from_millis(100)),
        ..StackOptions::default()
    })
    .await;
    let (_, accepted) = stack
        .post_json("/tasks", &json!({"type": "noop", "input": {}}))
        .await;
    let id = accepted["task_id"].as_str().unwrap().to_string();
    // Finished, then gone once the maintenance leader's next pass runs.
    poll(Duration::from_secs(20), || async {
        let resp = stack
            .http
            .get(stack.url(&format!("/tasks/{id}")))
            .send()
            .await
            .unwrap();
        (resp.status() == 404).then_some(())
    })
    .await;
    stack.stop().await;
}

async fn cancelling_a_running_task_stops_it(store: StoreKind) {
    let stack = Stack::start(StackOptions {
        store,
        workers: 1,
        ..StackOptions::default()
    })
    .await;
    let (_, accepted) = stack
        .post_json("/tasks", &json!({"type": "sleep", "input": {"ms": 60000}}))
        .await;
    let id = accepted["task_id"].as_str().unwrap().to_string();
    poll(Duration::from_secs(10), || async {
        let (_, t) = stack.get_json(&format!("/tasks/{id}")).await;
        (t["status"] == "running").then_some(())
    })
    .await;
    assert_eq!(stack.delete(&format!("/tasks/{id}")).await, 200);
    // The worker learns at its next lease renewal and stops the sleep, long
    // before the minute is up.
    poll(Duration::from_secs(10), || async {
        let (_, body) = stack.get_json("/workers").await;
        (body["workers"][0]["active_tasks"] == 0).then_some(())
    })
    .await;
    let (_, t) = stack.get_json(&format!("/tasks/{id}")).await;
    assert_eq!(t["status"], "cancelled");
    stack.stop().await;
}

async fn long_tasks_show_their_progress(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    let (_, accepted) = stack
        .post_json("/tasks", &json!({"type": "sleep", "input": {"ms": 3000}}))
        .await;
    let id = accepted["task_id"].as_str().unwrap().to_string();
    let midway = poll(Duration::from_secs(10), || async {
        let (_, t) = stack.get_json(&format!("/tasks/{id}")).await;
        let p = t["progress"].as_i64()?;
        (t["status"] == "running" && (1..100).contains(&p)).then_some(p)
    })
    .await;
    assert!((1..100).contains(&midway));
    let done = stack.wait_task(&id).await;
    assert_eq!(
        (done["status"].as_str(), done["progress"].as_i64()),
        (Some("succeeded"), Some(100)),
        "{done}"
    );
    stack.stop().await;
}

async fn periodic_jobs_run_once_per_slot_across_workers(store: StoreKind) {
    // Three workers all tick the scheduler; one slot must still be one task.
    let stack = Stack::start(StackOptions {
        store,
        workers: 3,
        periodic: vec!["heartbeat|* * * * * *|noop|{}"],
        ..StackOptions::default()
    })
    .await;
    let tasks = poll(Duration::from_secs(20), || async {
        let (_, page) = stack.get_json("/tasks?type=noop&limit=500").await;
        let tasks = page["tasks"].as_array()?.clone();
        (tasks.len() >= 3).then_some(tasks)
    })
    .await;
    let slots: Vec<&str> = tasks
        .iter()
        .map(|t| t["run_at"].as_str().unwrap())
        .collect();
    let unique: HashSet<&str> = slots.iter().copied().collect();
    assert_eq!(
        unique.len(),
        slots.len(),
        "a slot was queued twice: {slots:?}"
    );
    stack.stop().await;
}

/// Workers claim tiny tasks ahead of their free slots; when the queue turns
/// to long tasks, none of them sits in one worker's hand while another
/// worker has free slots (with default flags: 3 workers × 4 slots).
async fn a_worker_that_learnt_tasks_are_fast_does_not_hoard_slow_ones(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    let mut fast = Vec::new();
    for i in 0..400 {
        let body = json!({"type": "md5", "input": {"string": format!("fast-{i}")}});
        let (status, accepted) = stack.post_json("/tasks", &body).await;
        assert_eq!(status, 202, "{accepted}");
        fast.push(accepted["task_id"].as_str().unwrap().to_string());
    }
    for id in &fast {
        assert_eq!(stack.wait_task(id).await["status"], "succeeded");
    }
    // As many slow tasks as there are slots, due at one instant (so one
    // claim could take them all): all must run at once.
    let due = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    for _ in 0..12 {
        let body = json!({"type": "sleep", "input": {"ms": 9000}, "run_at": due});
        let (status, _) = stack.post_json("/tasks", &body).await;
        assert_eq!(status, 202);
    }
    // Tasks in a worker's hand show as running too: only 4 on each of the
    // three workers means every slot runs one.
    let running = poll(Duration::from_secs(7), || async {
        let (_, page) = stack
            .get_json("/tasks?type=sleep&status=running&limit=50")
            .await;
        let tasks = page["tasks"].as_array()?.clone();
        let mut per_worker: HashMap<String, usize> = HashMap::new();
        for t in &tasks {
            *per_worker
                .entry(t["worker_id"].as_str()?.to_string())
                .or_default() += 1;
        }
        (per_worker.len() == 3 && per_worker.values().all(|n| *n == 4)).then_some(tasks)
    })
    .await;
    // Nothing was counted as an attempt while it waited in a worker's hand.
    for t in &running {
        assert_eq!(t["attempts"], 1, "{t}");
        let id = t["id"].as_str().unwrap();
        assert_eq!(stack.delete(&format!("/tasks/{id}")).await, 200);
    }
    stack.stop().await;
}

crate::for_each_store!(
    a_worker_that_learnt_tasks_are_fast_does_not_hoard_slow_ones,
    periodic_jobs_run_once_per_slot_across_workers,
    long_tasks_show_their_progress,
    cancelling_a_running_task_stops_it,
    finished_tasks_are_deleted_after_the_retention,
    many_tasks_each_run_exactly_once_across_workers,
    workers_show_running_tasks_and_go_offline_on_shutdown
);
