//! What every backend must do. Each function takes a fresh, empty store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use weir_core::*;

mod batches;
mod drift;
mod limits;
mod operations;
mod steering;
mod task_types;
mod workflows;
pub use batches::*;
pub use drift::*;
pub use limits::*;
pub use operations::*;
pub use steering::*;
pub use task_types::*;
pub use workflows::*;

pub(crate) fn insert_params(kind: Builtin, s: &str, now: DateTime<Utc>) -> TaskInsertParams {
    let input = json!({ "string": s });
    TaskInsertParams {
        id: TaskId::new(),
        kind: kind.into(),
        cache_key: TaskTypes::default()
            .get(kind.as_str())
            .ok()
            .and_then(|t| t.cache_key(&input)),
        input,
        max_attempts: 3,
        priority: 0,
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

pub(crate) fn claim(worker: &str, max: u32, now: DateTime<Utc>) -> TaskClaimParams {
    TaskClaimParams {
        worker_id: worker.into(),
        max,
        now,
        lease: Duration::from_secs(15),
        queues: None,
        key_limit: 1,
        types: None,
    }
}

pub(crate) fn success(
    t: &ClaimedTask,
    now: DateTime<Utc>,
    cache: Option<CacheWrite>,
) -> TaskCompletion {
    TaskCompletion {
        id: t.id,
        lease_token: t.lease_token,
        outcome: TaskOutcome::Succeeded {
            result: json!({"md5": "x"}),
            cache,
        },
        now,
    }
}

pub async fn insert_then_get_round_trips(store: Arc<dyn Store>) {
    let now = Utc::now();
    let p = insert_params(Builtin::Md5, "a", now);
    let id = p.id;
    let inserted = store.task_insert(p).await.unwrap();
    let got = store.task_get(id).await.unwrap().unwrap();
    assert_eq!(inserted, got);
    assert_eq!(got.state, TaskState::Queued);
    assert_eq!(got.attempts, 0);
    assert_eq!(got.input, json!({"string": "a"}));
    assert_eq!(got.created_at.timestamp_millis(), now.timestamp_millis());
    assert!(store.task_get(TaskId::new()).await.unwrap().is_none());
}

pub async fn claim_never_hands_a_task_to_two_workers(store: Arc<dyn Store>) {
    let now = Utc::now();
    for i in 0..200 {
        store
            .task_insert(insert_params(Builtin::Md5, &i.to_string(), now))
            .await
            .unwrap();
    }
    let mut claimers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let store = store.clone();
        claimers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .task_claim(claim(&format!("w{w}"), 7, now))
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|t| t.id));
            }
        });
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    while let Some(ids) = claimers.join_next().await {
        for id in ids.unwrap() {
            total += 1;
            assert!(seen.insert(id), "task {id} claimed twice");
        }
    }
    assert_eq!(total, 200);
}

pub async fn claim_orders_by_priority_then_run_at(store: Arc<dyn Store>) {
    let now = Utc::now();
    let mut ids = Vec::new();
    for (priority, ago_ms) in [(0, 30), (5, 10), (0, 20), (5, 40)] {
        let mut p = insert_params(Builtin::Md5, &format!("p{priority}-{ago_ms}"), now);
        p.priority = priority;
        p.run_at = now - chrono::Duration::milliseconds(ago_ms);
        ids.push(p.id);
        store.task_insert(p).await.unwrap();
    }
    let mut order = Vec::new();
    for _ in 0..4 {
        order.extend(
            store
                .task_claim(claim("w", 1, now))
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.id),
        );
    }
    // Priority 5 first (older run_at first), then priority 0 by run_at.
    assert_eq!(order, vec![ids[3], ids[1], ids[0], ids[2]]);
}

pub async fn claim_skips_tasks_not_yet_due(store: Arc<dyn Store>) {
    let now = Utc::now();
    let mut p = insert_params(Builtin::Md5, "later", now);
    p.run_at = now + chrono::Duration::seconds(60);
    let id = p.id;
    store.task_insert(p).await.unwrap();
    assert!(store
        .task_claim(claim("w", 10, now))
        .await
        .unwrap()
        .is_empty());
    let later = now + chrono::Duration::seconds(61);
    let got = store.task_claim(claim("w", 10, later)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
}

pub async fn complete_records_result_and_cache(store: Arc<dyn Store>) {
    let now = Utc::now();
    let p = insert_params(Builtin::Md5, "cached", now);
    let key = p.cache_key.clone().unwrap();
    store.task_insert(p).await.unwrap();
    let t = store
        .task_claim(claim("w1", 1, now))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(t.attempt, 1);
    let running = store.task_get(t.id).await.unwrap().unwrap();
    assert_eq!(running.state, TaskState::Running);
    assert_eq!(running.worker_id.as_deref(), Some("w1"));
    assert!(store.cache_get(&key, now).await.unwrap().is_none());

    let cache = CacheWrite {
        key: key.clone(),
        expires_at: now + chrono::Duration::seconds(60),
    };
    let out = store
        .task_complete_many(&[success(&t, now, Some(cache))])
        .await
        .unwrap();
    assert_eq!(out, vec![CompletionOutcome::Applied]);
    let done = store.task_get(t.id).await.unwrap().unwrap();
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(done.result, Some(json!({"md5": "x"})));
    assert!(done.completed_at.is_some());
    assert_eq!(
        store.cache_get(&key, now).await.unwrap(),
        Some(json!({"md5": "x"}))
    );
    // Expired entries are not served.
    let after = now + chrono::Duration::seconds(61);
    assert!(store.cache_get(&key, after).await.unwrap().is_none());
}

pub async fn stale_lease_token_is_rejected(store: Arc<dyn Store>) {
    let now = Utc::now();
    store
        .task_insert(insert_params(Builtin::Md5, "s", now))
        .await
        .unwrap();
    let first = store
        .task_claim(claim("w1", 1, now))
        .await
        .unwrap()
        .remove(0);
    // The lease lapses; the rescuer re-queues; another worker claims it.
    let later = now + chrono::Duration::seconds(16);
    assert_eq!(
        store
            .task_rescue_expired(TaskRescueParams { now: later })
            .await
            .unwrap(),
        1
    );
    let second = store
        .task_claim(claim("w2", 1, later))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(second.id, first.id);
    assert!(second.lease_token > first.lease_token);
    assert_eq!(second.attempt, 2);

    let out = store
        .task_complete_many(&[success(&first, later, None)])
        .await
        .unwrap();
    assert_eq!(out, vec![CompletionOutcome::LeaseLost]);
    assert_eq!(
        store.task_get(first.id).await.unwrap().unwrap().state,
        TaskState::Running
    );
    let out = store
        .task_complete_many(&[success(&second, later, None)])
        .await
        .unwrap();
    assert_eq!(out, vec![CompletionOutcome::Applied]);
    let done = store.task_get(first.id).await.unwrap().unwrap();
    assert_eq!(
        (done.state, done.worker_id.as_deref()),
        (TaskState::Succeeded, Some("w2"))
    );
}

pub async fn completing_twice_is_idempotent(store: Arc<dyn Store>) {
    let now = Utc::now();
    store
        .task_insert(insert_params(Builtin::Md5, "twice", now))
        .await
        .unwrap();
    let t = store
        .task_claim(claim("w", 1, now))
        .await
        .unwrap()
        .remove(0);
    let c = success(&t, now, None);
    let out = store
        .task_complete_many(&[c.clone(), c.clone()])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![CompletionOutcome::Applied, CompletionOutcome::LeaseLost]
    );
    let out = store.task_complete_many(&[c]).await.unwrap();
    assert_eq!(out, vec![CompletionOutcome::LeaseLost]);
    assert_eq!(
        store.task_get(t.id).await.unwrap().unwrap().state,
        TaskState::Succeeded
    );
}

pub async fn failure_retries_then_dies(store: Arc<dyn Store>) {
    let mut now = Utc::now();
    let mut p = insert_params(Builtin::Md5, "fail", now);
    p.max_attempts = 2;
    let id = p.id;
    store.task_insert(p).await.unwrap();

    let t = store
        .task_claim(claim("w", 1, now))
        .await
        .unwrap()
        .remove(0);
    let retry_at = now + chrono::Duration::seconds(5);
    let fail = |t: &ClaimedTask, now, retry_at| TaskCompletion {
        id: t.id,
        lease_token: t.lease_token,
        outcome: TaskOutcome::Failed {
            error: format!("boom {}", t.attempt),
            retry_at,
        },
        now,
    };
    store
        .task_complete_many(&[fail(&t, now, Some(retry_at))])
        .await
        .unwrap();
    let queued = store.task_get(id).await.unwrap().unwrap();
    assert_eq!(queued.state, TaskState::Queued);
    assert_eq!(queued.error.as_deref(), Some("boom 1"));
    // Not before the backoff.
    assert!(store
        .task_claim(claim("w", 1, now))
        .await
        .unwrap()
        .is_empty());
    now = retry_at;
    let t = store
        .task_claim(claim("w", 1, now))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(t.attempt, 2);
    store
        .task_complete_many(&[fail(&t, now, None)])
        .await
        .unwrap();
    let dead = store.task_get(id).await.unwrap().unwrap();
    assert_eq!(dead.state, TaskState::Dead);
    assert_eq!(dead.attempts, 2);
    assert_eq!(dead.error.as_deref(), Some("boom 2"));
    assert!(dead.completed_at.is_some());
    // Every attempt's error is kept, oldest first.
    let history: Vec<(i32, &str, Option<&str>)> = dead
        .errors
        .iter()
        .map(|e| (e.attempt, e.error.as_str(), e.worker_id.as_deref()))
        .collect();
    assert_eq!(
        history,
        vec![(1, "boom 1", Some("w")), (2, "boom 2", Some("w"))]
    );
}

pub async fn expired_lease_is_rescued(store: Arc<dyn Store>) {
    let now = Utc::now();
    let mut last = insert_params(Builtin::Md5, "last-try", now);
    last.max_attempts = 1;
    let last_id = last.id;
    store
        .task_insert(insert_params(Builtin::Md5, "r", now))
        .await
        .unwrap();
    store.task_insert(last).await.unwrap();
    assert_eq!(store.task_claim(claim("w", 2, now)).await.unwrap().len(), 2);
    // Before expiry nothing is rescued.
    let early = now + chrono::Duration::seconds(14);
    assert_eq!(
        store
            .task_rescue_expired(TaskRescueParams { now: early })
            .await
            .unwrap(),
        0
    );
    let late = now + chrono::Duration::seconds(16);
    assert_eq!(
        store
            .task_rescue_expired(TaskRescueParams { now: late })
            .await
            .unwrap(),
        2
    );
    // The one with attempts left is queued again; the other is dead.
    let again = store.task_claim(claim("w2", 5, late)).await.unwrap();
    assert_eq!(again.len(), 1);
    let dead = store.task_get(last_id).await.unwrap().unwrap();
    assert_eq!(dead.state, TaskState::Dead);
    assert!(dead.error.unwrap().contains("lease expired"));
}

pub async fn release_requeues_without_spending_an_attempt(store: Arc<dyn Store>) {
    let now = Utc::now();
    store
        .task_insert(insert_params(Builtin::Md5, "rel", now))
        .await
        .unwrap();
    let t = store
        .task_claim(claim("w", 1, now))
        .await
        .unwrap()
        .remove(0);
    let n = store
        .task_release(TaskReleaseParams {
            tasks: vec![(t.id, t.lease_token)],
            now,
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    let task = store.task_get(t.id).await.unwrap().unwrap();
    assert_eq!((task.state, task.attempts), (TaskState::Queued, 0));
    let again = store
        .task_claim(claim("w2", 1, now))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(again.attempt, 1);
    // A stale release does nothing.
    let n = store
        .task_release(TaskReleaseParams {
            tasks: vec![(t.id, t.lease_token)],
            now,
        })
        .await
        .unwrap();
    assert_eq!(n, 0);
}

pub async fn lease_extension_keeps_a_task_from_rescue(store: Arc<dyn Store>) {
    let now = Utc::now();
    store
        .task_insert(insert_params(Builtin::Md5, "ext", now))
        .await
        .unwrap();
    let t = store
        .task_claim(claim("w", 1, now))
        .await
        .unwrap()
        .remove(0);
    let extended = store
        .task_lease_extend(TaskLeaseExtendParams {
            worker_id: "w".into(),
            tasks: vec![(t.id, t.lease_token)],
            lease_expires_at: now + chrono::Duration::seconds(30),
            progress: vec![(t.id, 40)],
        })
        .await
        .unwrap();
    assert_eq!(extended, vec![t.id]);
    assert_eq!(
        store.task_get(t.id).await.unwrap().unwrap().progress,
        Some(40)
    );
    let at_20s = now + chrono::Duration::seconds(20);
    assert_eq!(
        store
            .task_rescue_expired(TaskRescueParams { now: at_20s })
            .await
            .unwrap(),
        0
    );
    // Another worker's id cannot extend it.
    let other = store
        .task_lease_extend(TaskLeaseExtendParams {
            worker_id: "intruder".into(),
            tasks: vec![(t.id, t.lease_token)],
            lease_expires_at: now + chrono::Duration::seconds(300),
            progress: vec![(t.id, 90)],
        })
        .await
        .unwrap();
    assert!(other.is_empty());
    // …nor report its progress.
    assert_eq!(
        store.task_get(t.id).await.unwrap().unwrap().progress,
        Some(40)
    );
    let at_31s = now + chrono::Duration::seconds(31);
    assert_eq!(
        store
            .task_rescue_expired(TaskRescueParams { now: at_31s })
            .await
            .unwrap(),
        1
    );
}

pub async fn request_log_counts_per_node(store: Arc<dyn Store>) {
    let entry = |node: &str, i: usize| RequestLogEntry {
        node_id: node.into(),
        method: "GET".into(),
        path: "/".into(),
        status: 200,
        message: Some(format!("m{i}")),
        created_at: Utc::now(),
    };
    let batch: Vec<_> = (0..2500)
        .map(|i| entry(if i % 5 == 0 { "b" } else { "a" }, i))
        .collect();
    store.request_log_insert_many(&batch).await.unwrap();
    store.request_log_insert_many(&[]).await.unwrap();
    let stats = store.request_log_stats().await.unwrap();
    assert_eq!(stats.total, 2500);
    assert_eq!(stats.nodes["a"], 2000);
    assert_eq!(stats.nodes["b"], 500);
}

pub async fn worker_heartbeat_upserts(store: Arc<dyn Store>) {
    let now = Utc::now();
    let beat = |status, processed| WorkerHeartbeatParams {
        worker_id: "w1".into(),
        status,
        concurrency: 4,
        active_tasks: 1,
        current_task: Some("t".into()),
        processed,
        failed: 0,
        started_at: now,
        now: Utc::now(),
        task_types: vec!["md5".into()],
    };
    store
        .worker_heartbeat(beat(WorkerStatus::Online, 1))
        .await
        .unwrap();
    store
        .worker_heartbeat(beat(WorkerStatus::Draining, 7))
        .await
        .unwrap();
    let workers = store.worker_list().await.unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].status, WorkerStatus::Draining);
    assert_eq!(workers[0].processed, 7);
    assert_eq!(workers[0].concurrency, 4);
}

pub async fn insert_wakes_waiting_workers(store: Arc<dyn Store>) {
    let mut signal = store.task_inserted();
    signal.borrow_and_update();
    store
        .task_insert(insert_params(Builtin::Md5, "wake", Utc::now()))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), signal.changed())
        .await
        .expect("no wake-up after insert")
        .unwrap();
}

pub async fn insert_many_is_one_batch_and_idempotent(store: Arc<dyn Store>) {
    let now = Utc::now();
    let batch: Vec<TaskInsertParams> = (0..50)
        .map(|i| insert_params(Builtin::Md5, &format!("many-{i}"), now))
        .collect();
    store.task_insert_many(&batch).await.unwrap();
    // Again, as a retry after a lost answer would: nothing doubles.
    store.task_insert_many(&batch).await.unwrap();
    for p in &batch {
        let t = store.task_get(p.id).await.unwrap().unwrap();
        assert_eq!(t.state, TaskState::Queued);
        assert_eq!(t.input, p.input);
        assert_eq!(t.kind.as_str(), "md5");
    }
    let claimed = store.task_claim(claim("w", 100, now)).await.unwrap();
    assert_eq!(claimed.len(), 50);
    assert_eq!(
        claimed.iter().map(|t| t.id).collect::<HashSet<_>>(),
        batch.iter().map(|p| p.id).collect::<HashSet<_>>()
    );
}
