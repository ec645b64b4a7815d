//! Promises the two dialects once kept differently (regression tests named
//! after the drift): the order a batch claim hands tasks out in, and what a
//! resent submission comes to.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use weir_core::*;

use super::{claim, insert_params, success};

/// SQLite handed a batch out by id, PostgreSQL by priority then run_at.
pub async fn a_batch_claim_comes_back_in_claim_order(store: Arc<dyn Store>) {
    let now = Utc::now();
    let mut ids = Vec::new();
    // Inserted (so ids ordered) against the claim order.
    for (priority, ago_ms) in [(0, 10), (0, 30), (5, 10), (5, 40)] {
        let mut p = insert_params(Builtin::Md5, &format!("p{priority}-{ago_ms}"), now);
        p.priority = priority;
        p.run_at = now - chrono::Duration::milliseconds(ago_ms);
        ids.push(p.id);
        store.task_insert(p).await.unwrap();
    }
    let order: Vec<TaskId> = store
        .task_claim(claim("w", 4, now))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(order, vec![ids[3], ids[2], ids[1], ids[0]]);
}

/// The same id resent under a new idempotency key: SQLite failed with
/// `Internal`, PostgreSQL with `Unavailable`. It is the task already stored.
pub async fn a_resent_id_under_a_new_idempotency_key_returns_its_task(store: Arc<dyn Store>) {
    let now = Utc::now();
    // Not cacheable: no live task shares its input, only its id.
    let p = insert_params(Builtin::Noop, "resent", now);
    assert!(p.cache_key.is_none());
    let first = store.task_insert(p.clone()).await.unwrap();
    let (task, created) = store
        .task_insert_idempotent(p, &"a-new-key".into(), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(task.id, first.id);
    // The key now names that task.
    let again = insert_params(Builtin::Noop, "something else", now);
    let (task, created) = store
        .task_insert_idempotent(again, &"a-new-key".into(), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(task.id, first.id);
}

/// A resend of a task that already finished: PostgreSQL queued it again
/// (finished tasks live in another table), so it ran twice.
pub async fn a_resent_id_of_a_finished_task_is_not_queued_again(store: Arc<dyn Store>) {
    let now = Utc::now();
    let p = insert_params(Builtin::Md5, "once", now);
    store.task_insert(p.clone()).await.unwrap();
    let claimed = store.task_claim(claim("w", 1, now)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .task_complete_many(&[success(&claimed[0], now, None)])
        .await
        .unwrap();
    let ids = store
        .task_insert_many(std::slice::from_ref(&p))
        .await
        .unwrap();
    assert_eq!(ids, vec![p.id]);
    let task = store.task_insert(p.clone()).await.unwrap();
    assert_eq!(task.state, TaskState::Succeeded);
    assert!(
        store
            .task_claim(claim("w", 1, now))
            .await
            .unwrap()
            .is_empty(),
        "a finished task was queued again"
    );
    assert_eq!(store.task_counts().await.unwrap().succeeded, 1);
}
