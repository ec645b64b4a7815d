//! The driver conformance suite: each dialect operation, checked against
//! every driver, below the store's policy. A new dialect passes this first.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use weir_core::*;
use weir_store::Driver;

use crate::conformance::{claim, insert_params, success};

/// Declares one test per driver check, each on a fresh driver from `$setup`.
#[macro_export]
macro_rules! driver_suite {
    ($setup:ident) => {
        $crate::driver_suite!($setup;
            insert_rows_skips_stored_ids_and_live_cache_keys,
            claim_unlimited_leaves_keyed_tasks_and_limited_queues,
            a_transaction_claims_one_key_and_counts_it_running,
            a_dropped_transaction_rolls_back,
            complete_many_returns_only_the_applied_ids,
            a_completion_says_whether_a_limit_counted_its_task,
            rescue_tells_dead_from_requeued,
            limited_queues_come_with_their_buckets,
            a_task_queued_before_a_draining_claimer_is_claimed_next,
        );
    };
    ($setup:ident; $($name:ident),* $(,)?) => {
        mod driver_suite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (driver, _guard) = $setup().await;
                    $crate::driver::$name(driver).await;
                }
            )*
        }
    };
}

pub async fn insert_rows_skips_stored_ids_and_live_cache_keys(d: Arc<dyn Driver>) {
    let now = Utc::now();
    let a = insert_params(Builtin::Md5, "a", now);
    let same_input = insert_params(Builtin::Md5, "a", now);
    let b = insert_params(Builtin::Md5, "b", now);
    let inserted = d.task_insert_rows(&[&a, &b], false).await.unwrap();
    assert_eq!(inserted.len(), 2);
    let again = d.task_insert_rows(&[&a, &same_input], false).await.unwrap();
    assert!(again.is_empty(), "a stored id or a live input was inserted");
    let standing = d.task_standing_for(&[&a, &same_input]).await.unwrap();
    assert!(standing.iter().any(|s| s.id == a.id));
    assert!(standing
        .iter()
        .any(|s| s.id == a.id && s.cache_key == a.cache_key));
}

pub async fn claim_unlimited_leaves_keyed_tasks_and_limited_queues(d: Arc<dyn Driver>) {
    let now = Utc::now();
    let plain = insert_params(Builtin::Md5, "plain", now);
    let mut keyed = insert_params(Builtin::Md5, "keyed", now);
    keyed.concurrency_key = Some("k".into());
    let mut limited = insert_params(Builtin::Md5, "limited", now);
    limited.queue = "slow".into();
    d.task_insert_rows(&[&plain, &keyed, &limited], false)
        .await
        .unwrap();
    d.queue_save_limits(&QueueLimits {
        name: "slow".into(),
        concurrency: Some(1),
        rate_per_second: None,
        burst: None,
        paused: false,
    })
    .await
    .unwrap();
    assert!(d.keyed_tasks_due(now).await.unwrap());
    // The claimer's view of the limited queues is stale (none): the
    // statement reads them itself.
    let got = d.claim_unlimited(&claim("w", 10, now), &[]).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task.id, plain.id);
    assert_eq!(got[0].task.attempt, 1);
}

pub async fn a_transaction_claims_one_key_and_counts_it_running(d: Arc<dyn Driver>) {
    let now = Utc::now();
    let mut params = Vec::new();
    for i in 0..3 {
        let mut p = insert_params(Builtin::Md5, &format!("k{i}"), now);
        p.concurrency_key = Some("tenant-1".into());
        params.push(p);
    }
    let refs: Vec<&TaskInsertParams> = params.iter().collect();
    d.task_insert_rows(&refs, false).await.unwrap();
    let c = claim("w", 10, now);
    let mut tx = d.begin().await.unwrap();
    assert_eq!(
        tx.due_keys(&c, None, 10).await.unwrap(),
        vec!["tenant-1".to_string()]
    );
    assert!(tx.key_try_lock("tenant-1").await.unwrap());
    assert_eq!(tx.running_with_key("tenant-1").await.unwrap(), 0);
    let got = tx
        .claim_filtered(&c, None, Some("tenant-1"), 2)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(tx.running_with_key("tenant-1").await.unwrap(), 2);
    tx.commit().await.unwrap();
    assert_eq!(d.task_state_counts().await.unwrap().len(), 2);
}

pub async fn a_dropped_transaction_rolls_back(d: Arc<dyn Driver>) {
    let now = Utc::now();
    let p = insert_params(Builtin::Md5, "rolled back", now);
    let oldest = now - chrono::Duration::seconds(60);
    {
        let mut tx = d.begin().await.unwrap();
        assert_eq!(
            tx.idempotency_key_take("key", None, p.id, now, oldest)
                .await
                .unwrap(),
            None
        );
        assert!(tx.task_insert_returning(&p).await.unwrap().is_some());
    }
    assert!(d.task_get(p.id).await.unwrap().is_none());
    let mut tx = d.begin().await.unwrap();
    assert_eq!(
        tx.idempotency_key_take("key", None, p.id, now, oldest)
            .await
            .unwrap(),
        None,
        "the key was kept by a transaction that rolled back"
    );
    let task = tx.task_insert_returning(&p).await.unwrap().unwrap();
    assert_eq!(task.input, json!({"string": "rolled back"}));
    tx.commit().await.unwrap();
    assert!(d.task_get(p.id).await.unwrap().is_some());
}

pub async fn complete_many_returns_only_the_applied_ids(d: Arc<dyn Driver>) {
    let now = Utc::now();
    let a = insert_params(Builtin::Md5, "a", now);
    let b = insert_params(Builtin::Md5, "b", now);
    d.task_insert_rows(&[&a, &b], false).await.unwrap();
    let got = d.claim_unlimited(&claim("w", 2, now), &[]).await.unwrap();
    assert_eq!(got.len(), 2);
    let mut stale = success(&got[1].task, now, None);
    stale.lease_token += 1;
    let mut tx = d.begin().await.unwrap();
    let applied = tx
        .task_complete_many(&[success(&got[0].task, now, None), stale])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        applied.iter().map(|a| (a.id, a.ended)).collect::<Vec<_>>(),
        vec![(got[0].task.id, Some(TaskState::Succeeded))]
    );
    // PostgreSQL's statement knows the task is no workflow's step, so no
    // workflow statement follows (SQLite leaves the look to the workflow code).
    if d.name() == "postgres" {
        assert!(!applied[0].maybe_step);
    }
}

/// A completion tells the store whether the task's end may free a slot a
/// limit held another back for (then workers are woken), in and outside a
/// transaction alike.
pub async fn a_completion_says_whether_a_limit_counted_its_task(d: Arc<dyn Driver>) {
    let now = Utc::now();
    d.queue_save_limits(&QueueLimits {
        name: "narrow".into(),
        concurrency: Some(5),
        rate_per_second: None,
        burst: None,
        paused: false,
    })
    .await
    .unwrap();
    let plain = insert_params(Builtin::Md5, "plain", now);
    let mut keyed = insert_params(Builtin::Md5, "keyed", now);
    keyed.concurrency_key = Some("k".into());
    let mut narrow = insert_params(Builtin::Md5, "narrow", now);
    narrow.queue = "narrow".into();
    let plain2 = insert_params(Builtin::Md5, "plain 2", now);
    d.task_insert_rows(&[&plain, &keyed, &narrow, &plain2], false)
        .await
        .unwrap();
    let c = claim("w", 10, now);
    let mut tx = d.begin().await.unwrap();
    let mut got = tx.claim_filtered(&c, None, Some("k"), 1).await.unwrap();
    got.extend(
        tx.claim_filtered(&c, Some("narrow"), None, 1)
            .await
            .unwrap(),
    );
    tx.commit().await.unwrap();
    got.extend(d.claim_unlimited(&c, &["narrow".into()]).await.unwrap());
    assert_eq!(got.len(), 4);
    let done = |id: TaskId| {
        let t = &got.iter().find(|g| g.task.id == id).expect("claimed").task;
        success(t, now, None)
    };
    let mut tx = d.begin().await.unwrap();
    let applied = tx
        .task_complete_many(&[done(plain.id), done(keyed.id), done(narrow.id)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let limited: std::collections::HashSet<(TaskId, bool)> =
        applied.iter().map(|a| (a.id, a.limited)).collect();
    assert_eq!(
        limited,
        [(plain.id, false), (keyed.id, true), (narrow.id, true)].into()
    );
    // Outside a transaction: PostgreSQL applies it in one statement (no
    // step among them: none left); SQLite takes the transaction's path.
    let outside = d
        .task_complete_outside_workflows(&[done(plain2.id)])
        .await
        .unwrap();
    match d.name() {
        "postgres" => {
            let outside = outside.expect("PostgreSQL completes outside a transaction");
            assert!(outside.steps_left.is_empty());
            let applied: Vec<(TaskId, bool)> =
                outside.applied.iter().map(|a| (a.id, a.limited)).collect();
            assert_eq!(applied, vec![(plain2.id, false)]);
            let task = d.task_get(plain2.id).await.unwrap().unwrap();
            assert_eq!(task.state, TaskState::Succeeded);
        }
        _ => assert_eq!(outside, None),
    }
}

pub async fn rescue_tells_dead_from_requeued(d: Arc<dyn Driver>) {
    let now = Utc::now();
    let mut last = insert_params(Builtin::Md5, "last attempt", now);
    last.max_attempts = 1;
    let more = insert_params(Builtin::Md5, "more attempts", now);
    d.task_insert_rows(&[&last, &more], false).await.unwrap();
    let mut c = claim("w", 2, now);
    c.lease = Duration::from_secs(1);
    assert_eq!(d.claim_unlimited(&c, &[]).await.unwrap().len(), 2);
    let later = now + chrono::Duration::seconds(5);
    let mut tx = d.begin().await.unwrap();
    let rescued = tx
        .task_rescue_expired(later, "lease expired")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!((rescued.dead, rescued.requeued), (vec![last.id], 1));
    let dead = d.task_get(last.id).await.unwrap().unwrap();
    assert_eq!(dead.state, TaskState::Dead);
    assert_eq!(dead.error.as_deref(), Some("lease expired"));
}

pub async fn limited_queues_come_with_their_buckets(d: Arc<dyn Driver>) {
    let now = Utc::now();
    d.queue_save_limits(&QueueLimits {
        name: "slow".into(),
        concurrency: Some(2),
        rate_per_second: Some(5.0),
        burst: None,
        paused: false,
    })
    .await
    .unwrap();
    assert_eq!(d.limited_queue_names().await.unwrap(), vec!["slow"]);
    let mut tx = d.begin().await.unwrap();
    let queues = tx.limited_queues_lock(None).await.unwrap();
    assert_eq!(queues.len(), 1);
    assert_eq!(queues[0].refilled_at, None, "a new rate starts full");
    tx.bucket_save("slow", 1.5, now).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = d.begin().await.unwrap();
    let only_other = tx
        .limited_queues_lock(Some(&["other".to_string()]))
        .await
        .unwrap();
    assert!(only_other.is_empty());
    let queues = tx.limited_queues_lock(None).await.unwrap();
    assert_eq!(queues[0].tokens, 1.5);
    assert_eq!(
        queues[0].refilled_at.map(|t| t.timestamp_millis()),
        Some(now.timestamp_millis())
    );
}

/// A claimer draining a backlog in full batches may start its index walk
/// where its last batch ended; a task this process queues ahead of that
/// point (a higher priority, an earlier run_at) is still claimed first.
pub async fn a_task_queued_before_a_draining_claimer_is_claimed_next(d: Arc<dyn Driver>) {
    let now = Utc::now();
    let backlog: Vec<TaskInsertParams> = (0..30)
        .map(|i| insert_params(Builtin::Md5, &format!("backlog {i}"), now))
        .collect();
    d.task_insert_rows(&backlog.iter().collect::<Vec<_>>(), false)
        .await
        .unwrap();
    let first = d.claim_unlimited(&claim("w", 10, now), &[]).await.unwrap();
    assert_eq!(first.len(), 10, "a full batch");

    let mut urgent = insert_params(Builtin::Md5, "urgent", now);
    urgent.priority = 5;
    let mut early = insert_params(Builtin::Md5, "early", now);
    early.run_at = now - chrono::Duration::seconds(60);
    d.task_insert_rows(&[&urgent], false).await.unwrap();
    let next = d.claim_unlimited(&claim("w", 10, now), &[]).await.unwrap();
    assert_eq!(next.len(), 10);
    assert_eq!(next.iter().filter(|c| c.task.id == urgent.id).count(), 1);

    d.task_insert_rows(&[&early], false).await.unwrap();
    let after = d.claim_unlimited(&claim("w", 10, now), &[]).await.unwrap();
    assert!(
        after.iter().any(|c| c.task.id == early.id),
        "a task due earlier than the last batch was skipped"
    );
}
