//! What every backend must do for users steering tasks and for maintenance:
//! counts, retry and cancel, idempotency keys, the leader lease, pruning, listing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use weir_core::*;

use super::{claim, insert_params, success};

pub async fn task_counts_follow_states(store: Arc<dyn Store>) {
    let now = Utc::now();
    for i in 0..4 {
        store
            .task_insert(insert_params(Builtin::Md5, &format!("count-{i}"), now))
            .await
            .unwrap();
    }
    let claimed = store.task_claim(claim("w", 2, now)).await.unwrap();
    store
        .task_complete_many(&[success(&claimed[0], now, None)])
        .await
        .unwrap();
    let c = store.task_counts().await.unwrap();
    assert_eq!((c.queued, c.running, c.succeeded, c.dead), (2, 1, 1, 0));
    assert_eq!(c.pending(), 3);
}

pub async fn finished_counts_cover_only_the_window(store: Arc<dyn Store>) {
    let now = Utc::now();
    for i in 0..3 {
        let mut p = insert_params(Builtin::Md5, &format!("window-{i}"), now);
        p.max_attempts = 1;
        store.task_insert(p).await.unwrap();
    }
    let claimed = store.task_claim(claim("w", 3, now)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    // One finished two minutes ago, one just now, one went dead just now.
    let long_ago = now - chrono::Duration::minutes(2);
    let dead = TaskCompletion {
        id: claimed[2].id,
        lease_token: claimed[2].lease_token,
        outcome: TaskOutcome::Failed {
            error: "boom".into(),
            retry_at: None,
        },
        now,
    };
    store
        .task_complete_many(&[
            success(&claimed[0], long_ago, None),
            success(&claimed[1], now, None),
            dead,
        ])
        .await
        .unwrap();
    let last_minute = store
        .task_finished_counts(now - chrono::Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!((last_minute.succeeded, last_minute.dead), (1, 1));
    let all = store.task_finished_counts(long_ago).await.unwrap();
    assert_eq!((all.succeeded, all.dead), (2, 1));
}

pub async fn dead_tasks_can_be_retried_and_queued_ones_cancelled(store: Arc<dyn Store>) {
    let now = Utc::now();
    let mut p = insert_params(Builtin::Md5, "retry-me", now);
    p.max_attempts = 1;
    let id = p.id;
    store.task_insert(p).await.unwrap();
    let t = store
        .task_claim(claim("w", 1, now))
        .await
        .unwrap()
        .remove(0);
    let failed = TaskCompletion {
        id,
        lease_token: t.lease_token,
        outcome: TaskOutcome::Failed {
            error: "boom".into(),
            retry_at: None,
        },
        now,
    };
    store.task_complete_many(&[failed]).await.unwrap();
    assert_eq!(
        store.task_get(id).await.unwrap().unwrap().state,
        TaskState::Dead
    );

    // Retry: queued again, a fresh set of attempts, the last error kept.
    let TaskChange::Changed(retried) = store.task_retry(id, now).await.unwrap() else {
        panic!("retry did not apply");
    };
    assert_eq!((retried.state, retried.attempts), (TaskState::Queued, 0));
    assert_eq!(retried.error.as_deref(), Some("boom"));
    assert_eq!(
        store.task_retry(id, now).await.unwrap(),
        TaskChange::WrongState(TaskState::Queued)
    );
    assert_eq!(
        store.task_retry(TaskId::new(), now).await.unwrap(),
        TaskChange::NotFound
    );
    // The old attempt's token cannot complete the new life.
    let again = store
        .task_claim(claim("w2", 1, now))
        .await
        .unwrap()
        .remove(0);
    assert!(again.lease_token > t.lease_token);
    let stale = success(&t, now, None);
    assert_eq!(
        store.task_complete_many(&[stale]).await.unwrap(),
        vec![CompletionOutcome::LeaseLost]
    );

    // Cancel the running one: its completion is refused afterwards.
    let TaskChange::Changed(cancelled) = store.task_cancel(id, now).await.unwrap() else {
        panic!("cancel did not apply");
    };
    assert_eq!(cancelled.state, TaskState::Cancelled);
    assert_eq!(
        store
            .task_complete_many(&[success(&again, now, None)])
            .await
            .unwrap(),
        vec![CompletionOutcome::LeaseLost]
    );
    assert_eq!(
        store.task_get(id).await.unwrap().unwrap().state,
        TaskState::Cancelled
    );
    assert_eq!(
        store.task_cancel(id, now).await.unwrap(),
        TaskChange::WrongState(TaskState::Cancelled)
    );
    assert_eq!(store.task_counts().await.unwrap().cancelled, 1);
}

pub async fn a_reused_idempotency_key_with_another_request_is_refused(store: Arc<dyn Store>) {
    let now = Utc::now();
    let window = Duration::from_secs(3600);
    let key = |fingerprint: &str| IdempotencyKey {
        key: "k-reused".into(),
        fingerprint: Some(fingerprint.into()),
    };
    let first = insert_params(Builtin::Md5, "A", now);
    let (task, created) = store
        .task_insert_idempotent(first.clone(), &key("fp-a"), window)
        .await
        .unwrap();
    assert!(created);
    // The same request again: its task, replayed.
    let (again, created) = store
        .task_insert_idempotent(insert_params(Builtin::Md5, "A", now), &key("fp-a"), window)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, task.id);
    // Another request under the key: refused, naming the key's task; nothing queued.
    let refused = store
        .task_insert_idempotent(insert_params(Builtin::Md5, "B", now), &key("fp-b"), window)
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        StoreError::IdempotencyKeyReused(format!("task {}", task.id))
    );
    assert_eq!(store.task_counts().await.unwrap().queued, 1);
    // A caller with no fingerprint to compare gets the key's task.
    let (unchecked, created) = store
        .task_insert_idempotent(
            insert_params(Builtin::Md5, "C", now),
            &"k-reused".into(),
            window,
        )
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(unchecked.id, task.id);
}

pub async fn an_event_batch_key_refuses_another_batch(store: Arc<dyn Store>) {
    let now = Utc::now();
    let key = |fingerprint: &str| IdempotencyKey {
        key: "batch-1".into(),
        fingerprint: Some(fingerprint.into()),
    };
    store.event_key_take(&key("fp-a"), now).await.unwrap();
    // The same batch again: fine (its ids deduplicate it).
    store.event_key_take(&key("fp-a"), now).await.unwrap();
    assert_eq!(
        store.event_key_take(&key("fp-b"), now).await.unwrap_err(),
        StoreError::IdempotencyKeyReused("an earlier event batch".into())
    );
    // Concurrent takers of one fresh key: exactly one fingerprint wins.
    let takes: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let k = IdempotencyKey {
                    key: "batch-race".into(),
                    fingerprint: Some(format!("fp-{}", i % 2)),
                };
                store.event_key_take(&k, now).await.map(|()| i % 2)
            })
        })
        .collect();
    let mut winners = HashSet::new();
    for t in takes {
        if let Ok(fp) = t.await.unwrap() {
            winners.insert(fp);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
}

pub async fn idempotency_keys_return_the_same_task(store: Arc<dyn Store>) {
    let now = Utc::now();
    let window = Duration::from_secs(24 * 3600);
    let first = insert_params(Builtin::Md5, "once", now);
    let (task, created) = store
        .task_insert_idempotent(first.clone(), &"key-1".into(), window)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(task.id, first.id);
    // The same key again (a client retrying): the same task, nothing new.
    let second = insert_params(Builtin::Md5, "once", now);
    let (again, created) = store
        .task_insert_idempotent(second, &"key-1".into(), window)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, first.id);
    assert_eq!(store.task_counts().await.unwrap().queued, 1);
    // Concurrent calls with one key make one task.
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let p = insert_params(Builtin::Md5, &format!("race-{i}"), now);
                store
                    .task_insert_idempotent(p, &"key-race".into(), window)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut made = 0;
    for c in calls {
        let (t, created) = c.await.unwrap();
        ids.insert(t.id);
        made += usize::from(created);
    }
    assert_eq!((ids.len(), made), (1, 1));
    // Past the window the key is free again.
    let later = now + chrono::Duration::hours(25);
    let (fresh, created) = store
        .task_insert_idempotent(
            insert_params(Builtin::Md5, "once more", later),
            &"key-1".into(),
            window,
        )
        .await
        .unwrap();
    assert!(created);
    assert_ne!(fresh.id, first.id);
}

pub async fn one_leader_at_a_time_until_its_lease_expires(store: Arc<dyn Store>) {
    let now = Utc::now();
    let ask = |holder: &str, at: DateTime<Utc>| LeaderAcquireParams {
        name: "maintenance".into(),
        holder: holder.into(),
        now: at,
        ttl: Duration::from_secs(30),
    };
    assert!(store.leader_acquire(ask("a", now)).await.unwrap());
    assert!(!store.leader_acquire(ask("b", now)).await.unwrap());
    // The holder renews.
    let later = now + chrono::Duration::seconds(20);
    assert!(store.leader_acquire(ask("a", later)).await.unwrap());
    assert!(!store.leader_acquire(ask("b", later)).await.unwrap());
    // A silent holder loses it once the lease runs out.
    let after = later + chrono::Duration::seconds(31);
    assert!(store.leader_acquire(ask("b", after)).await.unwrap());
    assert!(!store.leader_acquire(ask("a", after)).await.unwrap());
}

pub async fn prune_removes_old_finished_tasks_expired_cache_and_silent_workers(
    store: Arc<dyn Store>,
) {
    let now = Utc::now();
    let done = insert_params(Builtin::Md5, "old", now);
    let waiting = insert_params(Builtin::Md5, "waiting", now + chrono::Duration::hours(2));
    let (done_id, waiting_id) = (done.id, waiting.id);
    store.task_insert(done).await.unwrap();
    let mut w = waiting;
    w.run_at = now + chrono::Duration::hours(2);
    store.task_insert(w).await.unwrap();
    let t = store
        .task_claim(claim("w", 1, now))
        .await
        .unwrap()
        .remove(0);
    let cache = CacheWrite {
        key: "md5:old".into(),
        expires_at: now + chrono::Duration::minutes(1),
    };
    store
        .task_complete_many(&[success(&t, now, Some(cache))])
        .await
        .unwrap();
    store
        .worker_heartbeat(WorkerHeartbeatParams {
            worker_id: "silent".into(),
            status: WorkerStatus::Online,
            concurrency: 1,
            active_tasks: 0,
            current_task: None,
            processed: 0,
            failed: 0,
            started_at: now,
            now,
            task_types: vec![],
        })
        .await
        .unwrap();

    // Nothing is old enough yet.
    let report = store
        .maintenance_prune(MaintenancePruneParams {
            finished_before: now - chrono::Duration::hours(1),
            dead_before: None,
            cancelled_before: None,
            now,
            workers_silent_since: now - chrono::Duration::minutes(1),
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(report, MaintenancePruneReport::default());

    let later = now + chrono::Duration::hours(2);
    let report = store
        .maintenance_prune(MaintenancePruneParams {
            finished_before: later - chrono::Duration::hours(1),
            dead_before: None,
            cancelled_before: None,
            now: later,
            workers_silent_since: later - chrono::Duration::minutes(1),
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(
        (
            report.tasks_deleted,
            report.cache_deleted,
            report.workers_marked_offline
        ),
        (1, 1, 1)
    );
    assert!(store.task_get(done_id).await.unwrap().is_none());
    assert!(
        store.task_get(waiting_id).await.unwrap().is_some(),
        "unfinished tasks stay"
    );
    assert!(store.cache_get("md5:old", now).await.unwrap().is_none());
    assert_eq!(
        store.worker_list().await.unwrap()[0].status,
        WorkerStatus::Offline
    );
}

pub async fn tasks_list_newest_first_with_filters_and_a_cursor(store: Arc<dyn Store>) {
    let now = Utc::now();
    let mut ids = Vec::new();
    for i in 0..5 {
        let p = insert_params(
            if i % 2 == 0 {
                Builtin::Md5
            } else {
                Builtin::Sha256
            },
            &format!("list-{i}"),
            now,
        );
        ids.push(p.id);
        store.task_insert(p).await.unwrap();
    }
    // Finish the oldest one.
    let t = store
        .task_claim(claim("w", 1, now))
        .await
        .unwrap()
        .remove(0);
    store
        .task_complete_many(&[success(&t, now, None)])
        .await
        .unwrap();

    let page = |state, kind: Option<TaskType>, before: Option<TaskId>, limit| TaskListParams {
        filter: TaskFilter {
            state,
            kind: kind.map(|k| k.as_str().to_owned()),
            ..TaskFilter::default()
        },
        sort: TaskSort::Created,
        after: before.map(|id| TaskCursor {
            id,
            finished_at: None,
        }),
        limit,
    };
    let all = store.task_list(page(None, None, None, 10)).await.unwrap();
    let newest_first: Vec<TaskId> = ids.iter().rev().copied().collect();
    assert_eq!(all.iter().map(|t| t.id).collect::<Vec<_>>(), newest_first);
    // Pages of two, following the cursor.
    let first = store.task_list(page(None, None, None, 2)).await.unwrap();
    let second = store
        .task_list(page(None, None, Some(first[1].id), 2))
        .await
        .unwrap();
    assert_eq!(
        second.iter().map(|t| t.id).collect::<Vec<_>>(),
        newest_first[2..4].to_vec()
    );
    // Filters.
    let done = store
        .task_list(page(Some(TaskState::Succeeded), None, None, 10))
        .await
        .unwrap();
    assert_eq!(done.iter().map(|t| t.id).collect::<Vec<_>>(), vec![ids[0]]);
    let sha = store
        .task_list(page(None, Some(Builtin::Sha256.into()), None, 10))
        .await
        .unwrap();
    assert_eq!(sha.len(), 2);
    let queued_md5 = store
        .task_list(page(
            Some(TaskState::Queued),
            Some(Builtin::Md5.into()),
            None,
            10,
        ))
        .await
        .unwrap();
    assert_eq!(
        queued_md5.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![ids[4], ids[2]]
    );
}

pub async fn cache_counts_hits_misses_and_reads_per_entry(store: Arc<dyn Store>) {
    let now = Utc::now();
    for (i, key) in ["md5:a", "md5:b"].iter().enumerate() {
        let mut p = insert_params(Builtin::Md5, &format!("cache-{i}"), now);
        p.cache_key = Some(key.to_string());
        store.task_insert(p).await.unwrap();
    }
    let claimed = store.task_claim(claim("w", 2, now)).await.unwrap();
    let done: Vec<TaskCompletion> = claimed
        .iter()
        .zip(["md5:a", "md5:b"])
        .map(|(t, key)| {
            success(
                t,
                now,
                Some(CacheWrite {
                    key: key.into(),
                    expires_at: now + chrono::Duration::hours(1),
                }),
            )
        })
        .collect();
    store.task_complete_many(&done).await.unwrap();
    let later = now + chrono::Duration::seconds(5);
    store
        .cache_record_access(&CacheAccessParams {
            hits: vec![("md5:b".into(), 3, later), ("md5:a".into(), 1, now)],
            misses: 2,
        })
        .await
        .unwrap();
    store
        .cache_record_access(&CacheAccessParams {
            hits: vec![("md5:b".into(), 1, now)],
            misses: 1,
        })
        .await
        .unwrap();
    let stats = store.cache_stats(10).await.unwrap();
    assert_eq!((stats.entries, stats.hits, stats.misses), (2, 5, 3));
    assert_eq!(stats.top[0].key, "md5:b");
    assert_eq!(stats.top[0].access_count, 4);
    // The latest read wins, even when reported out of order.
    assert_eq!(
        stats.top[0].last_accessed_at.unwrap().timestamp_millis(),
        later.timestamp_millis()
    );
    assert_eq!(stats.top[1].access_count, 1);
}

/// Regression: a key whose task the cleaner deleted named a missing task, so a
/// replayed submission failed with a corrupt-row error instead of queueing anew.
pub async fn idempotency_key_of_a_pruned_task_queues_a_new_one(store: Arc<dyn Store>) {
    let now = Utc::now();
    let window = Duration::from_secs(24 * 3600);
    let prune = |finished_before: DateTime<Utc>| MaintenancePruneParams {
        finished_before,
        dead_before: None,
        cancelled_before: None,
        now: finished_before,
        workers_silent_since: finished_before,
        limit: 100,
    };
    // Keys as old as the retention go with their tasks.
    let first = insert_params(Builtin::Md5, "pruned", now);
    store
        .task_insert_idempotent(first.clone(), &"key-pruned".into(), window)
        .await
        .unwrap();
    let t = store
        .task_claim(claim("w", 1, now))
        .await
        .unwrap()
        .remove(0);
    store
        .task_complete_many(&[success(&t, now, None)])
        .await
        .unwrap();
    let later = now + chrono::Duration::hours(2);
    let report = store
        .maintenance_prune(prune(later - chrono::Duration::hours(1)))
        .await
        .unwrap();
    assert_eq!(
        (report.tasks_deleted, report.idempotency_keys_deleted),
        (1, 1)
    );
    let (again, created) = store
        .task_insert_idempotent(
            insert_params(Builtin::Md5, "pruned", later),
            &"key-pruned".into(),
            window,
        )
        .await
        .unwrap();
    assert!(created);
    assert_ne!(again.id, first.id);

    // A key that outlives its task (the task finished, and was deleted, before
    // the key's own age reached the retention) must not break a replay either.
    let third = insert_params(Builtin::Md5, "vanished", later);
    store
        .task_insert_idempotent(third.clone(), &"key-vanished".into(), window)
        .await
        .unwrap();
    store
        .task_cancel(third.id, later - chrono::Duration::hours(1))
        .await
        .unwrap();
    let wiped = store
        .maintenance_prune(prune(later - chrono::Duration::minutes(30)))
        .await
        .unwrap();
    assert_eq!(
        (wiped.tasks_deleted, wiped.idempotency_keys_deleted),
        (1, 0)
    );
    let (fresh, created) = store
        .task_insert_idempotent(
            insert_params(Builtin::Md5, "vanished", later),
            &"key-vanished".into(),
            window,
        )
        .await
        .unwrap();
    assert!(created, "the key's task is gone: a new one is queued");
    assert_ne!(fresh.id, third.id);
}

pub async fn a_submissions_backoff_travels_with_its_task(store: Arc<dyn Store>) {
    let now = Utc::now();
    let policy = RetryPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(2),
    };
    let mut p = insert_params(Builtin::Md5, "own-backoff", now);
    p.backoff = Some(policy);
    p.max_attempts = 1;
    let id = p.id;
    store.task_insert_many(&[p]).await.unwrap();
    let mut plain = insert_params(Builtin::Md5, "type-backoff", now);
    plain.priority = -1;
    store.task_insert(plain).await.unwrap();
    assert_eq!(
        store.task_get(id).await.unwrap().unwrap().retry_backoff,
        Some(policy)
    );
    let claimed = store.task_claim(claim("w", 2, now)).await.unwrap();
    assert_eq!(claimed[0].id, id);
    assert_eq!(claimed[0].backoff, Some(policy));
    assert_eq!(claimed[1].backoff, None);
    // Still there once the task is finished (dead, on its only attempt).
    let dead = TaskCompletion {
        id,
        lease_token: claimed[0].lease_token,
        outcome: TaskOutcome::Failed {
            error: "boom".into(),
            retry_at: None,
        },
        now,
    };
    store.task_complete_many(&[dead]).await.unwrap();
    let t = store.task_get(id).await.unwrap().unwrap();
    assert_eq!((t.state, t.retry_backoff), (TaskState::Dead, Some(policy)));
    // And after a retry by hand.
    store.task_retry(id, now).await.unwrap();
    assert_eq!(
        store.task_get(id).await.unwrap().unwrap().retry_backoff,
        Some(policy)
    );
}

pub async fn the_same_cacheable_input_is_queued_once_while_live(store: Arc<dyn Store>) {
    let now = Utc::now();
    let first = insert_params(Builtin::Md5, "same", now);
    let again = insert_params(Builtin::Md5, "same", now);
    let other = insert_params(Builtin::Md5, "other", now);
    let ids = store
        .task_insert_many(&[first.clone(), again.clone(), other.clone()])
        .await
        .unwrap();
    assert_eq!(
        ids,
        vec![first.id, first.id, other.id],
        "folded into the first"
    );
    // A later submission, alone, is folded too; a resend by id is itself.
    let later = insert_params(Builtin::Md5, "same", now);
    assert_eq!(store.task_insert(later).await.unwrap().id, first.id);
    assert_eq!(
        store
            .task_insert_many(std::slice::from_ref(&first))
            .await
            .unwrap(),
        vec![first.id]
    );
    assert!(store.task_get(again.id).await.unwrap().is_none());
    // Non-cacheable kinds are never folded.
    let mut s1 = insert_params(Builtin::Sleep, "s", now);
    s1.cache_key = None;
    let mut s2 = s1.clone();
    s2.id = TaskId::new();
    assert_eq!(
        store
            .task_insert_many(&[s1.clone(), s2.clone()])
            .await
            .unwrap(),
        vec![s1.id, s2.id]
    );
    // Still folded while running; once finished, the same input is new work.
    let claimed = store.task_claim(claim("w", 10, now)).await.unwrap();
    let running = claimed.iter().find(|t| t.id == first.id).unwrap();
    let during = insert_params(Builtin::Md5, "same", now);
    assert_eq!(
        store.task_insert_many(&[during]).await.unwrap(),
        vec![first.id]
    );
    store
        .task_complete_many(&[success(running, now, None)])
        .await
        .unwrap();
    let after = insert_params(Builtin::Md5, "same", now);
    assert_eq!(
        store
            .task_insert_many(std::slice::from_ref(&after))
            .await
            .unwrap(),
        vec![after.id]
    );
    // An idempotency key on a folded submission names the live task.
    let keyed = insert_params(Builtin::Md5, "same", now);
    let (task, created) = store
        .task_insert_idempotent(keyed, &"k-same".into(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((task.id, created), (after.id, false));
}

pub async fn a_submission_whose_result_is_cached_is_answered_not_queued(store: Arc<dyn Store>) {
    let now = Utc::now();
    let first = insert_params(Builtin::Md5, "known", now);
    let key = first.cache_key.clone().unwrap();
    assert_eq!(
        store
            .task_submit_many(std::slice::from_ref(&first))
            .await
            .unwrap(),
        vec![Queued::Task(first.id)],
        "nothing cached yet: queued"
    );
    let running = store
        .task_claim(claim("w", 1, now))
        .await
        .unwrap()
        .remove(0);
    let cache = CacheWrite {
        key: key.clone(),
        expires_at: now + chrono::Duration::seconds(60),
    };
    store
        .task_complete_many(&[success(&running, now, Some(cache))])
        .await
        .unwrap();

    // In one batch: the cached input is answered with its result, another
    // input and a task without a cache key are queued.
    let again = insert_params(Builtin::Md5, "known", now);
    let other = insert_params(Builtin::Md5, "unknown", now);
    let mut plain = insert_params(Builtin::Sleep, "plain", now);
    plain.cache_key = None;
    let answers = store
        .task_submit_many(&[again.clone(), other.clone(), plain.clone()])
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![
            Queued::Cached(json!({"md5": "x"})),
            Queued::Task(other.id),
            Queued::Task(plain.id)
        ]
    );
    assert!(
        store.task_get(again.id).await.unwrap().is_none(),
        "not stored"
    );
    // Past its expiry the same input is new work; inserts that do not read
    // the cache (workflow steps, direct inserts) always queue.
    let late = insert_params(Builtin::Md5, "known", now + chrono::Duration::seconds(61));
    assert_eq!(
        store
            .task_submit_many(std::slice::from_ref(&late))
            .await
            .unwrap(),
        vec![Queued::Task(late.id)]
    );
    // With a live task and a cached result for the same input, the cache
    // answers (as when it was read before the insert).
    let both = insert_params(Builtin::Md5, "known", now);
    assert_eq!(
        store
            .task_submit_many(std::slice::from_ref(&both))
            .await
            .unwrap(),
        vec![Queued::Cached(json!({"md5": "x"}))]
    );
    let direct = insert_params(Builtin::Md5, "known", now);
    let folded = store
        .task_insert_many(std::slice::from_ref(&direct))
        .await
        .unwrap();
    assert_eq!(
        folded,
        vec![late.id],
        "folded into the live one, not answered"
    );
}

pub async fn a_tasks_tenant_travels_with_it_and_scopes_lists(store: Arc<dyn Store>) {
    let now = Utc::now();
    let with = |s: &str, tenant: Option<&str>| {
        let mut p = insert_params(Builtin::Md5, s, now);
        p.tenant = tenant.map(str::to_string);
        p
    };
    let mut last_try = with("a-1", Some("a"));
    last_try.max_attempts = 1;
    let (a1, a2, b1, none) = (last_try.id, TaskId::new(), TaskId::new(), TaskId::new());
    store.task_insert(last_try).await.unwrap();
    // The batch path as well as the single insert.
    let mut batch = vec![
        with("a-2", Some("a")),
        with("b-1", Some("b")),
        with("n", None),
    ];
    for (p, id) in batch.iter_mut().zip([a2, b1, none]) {
        p.id = id;
    }
    store.task_insert_many(&batch).await.unwrap();

    // Every move between live and finished keeps the tenant.
    let claimed = store.task_claim(claim("w", 4, now)).await.unwrap();
    assert_eq!(claimed.len(), 4);
    let a2_claim = claimed.iter().find(|t| t.id == a2).unwrap();
    store
        .task_complete_many(&[success(a2_claim, now, None)])
        .await
        .unwrap();
    let late = now + chrono::Duration::seconds(16);
    store
        .task_rescue_expired(TaskRescueParams { now: late })
        .await
        .unwrap();
    assert_eq!(
        store.task_get(a1).await.unwrap().unwrap().state,
        TaskState::Dead
    );
    store.task_retry(a1, late).await.unwrap();
    store.task_cancel(b1, late).await.unwrap();
    for (id, tenant) in [
        (a1, Some("a")),
        (a2, Some("a")),
        (b1, Some("b")),
        (none, None),
    ] {
        let task = store.task_get(id).await.unwrap().unwrap();
        assert_eq!(task.tenant.as_deref(), tenant, "{:?} {id}", task.state);
    }

    let listed = |tenant: Option<&str>| {
        let store = store.clone();
        let tenant = tenant.map(str::to_string);
        async move {
            let page = TaskListParams {
                filter: TaskFilter {
                    tenant,
                    ..TaskFilter::default()
                },
                limit: 10,
                ..TaskListParams::default()
            };
            let mut ids: Vec<TaskId> = store
                .task_list(page)
                .await
                .unwrap()
                .iter()
                .map(|t| t.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<TaskId>| {
        v.sort();
        v
    };
    assert_eq!(listed(Some("a")).await, sorted(vec![a1, a2]));
    assert_eq!(listed(Some("b")).await, vec![b1]);
    assert_eq!(listed(None).await, sorted(vec![a1, a2, b1, none]));
}

/// Each end has its own retention: dead tasks outlive succeeded ones by
/// default, for an operator to look at and retry.
pub async fn finished_tasks_are_pruned_by_their_states_own_retention(store: Arc<dyn Store>) {
    let now = Utc::now();
    for (i, outcome) in ["ok", "dead", "cancel"].iter().enumerate() {
        let t = store
            .task_insert(insert_params(Builtin::Md5, &format!("retain-{i}"), now))
            .await
            .unwrap();
        match *outcome {
            "cancel" => {
                store.task_cancel(t.id, now).await.unwrap();
            }
            _ => {
                let claimed = store.task_claim(claim("w", 1, now)).await.unwrap();
                let outcome = if *outcome == "ok" {
                    TaskOutcome::Succeeded {
                        result: json!({}),
                        cache: None,
                    }
                } else {
                    TaskOutcome::Failed {
                        error: "boom".into(),
                        retry_at: None,
                    }
                };
                store
                    .task_complete_many(&[TaskCompletion {
                        id: claimed[0].id,
                        lease_token: claimed[0].lease_token,
                        outcome,
                        now,
                    }])
                    .await
                    .unwrap();
            }
        }
    }
    let later = Utc::now() + chrono::Duration::hours(2);
    let prune = |dead: i64, cancelled: i64| MaintenancePruneParams {
        finished_before: later - chrono::Duration::hours(1),
        dead_before: Some(later - chrono::Duration::hours(dead)),
        cancelled_before: Some(later - chrono::Duration::hours(cancelled)),
        now: later,
        workers_silent_since: later,
        limit: 100,
    };
    // Succeeded (1 h) goes; dead and cancelled (3 h) stay.
    let report = store.maintenance_prune(prune(3, 3)).await.unwrap();
    assert_eq!(report.tasks_deleted, 1);
    let c = store.task_counts().await.unwrap();
    assert_eq!((c.succeeded, c.dead, c.cancelled), (0, 1, 1));
    // Cancelled's own retention passes; then dead's.
    assert_eq!(
        store
            .maintenance_prune(prune(3, 1))
            .await
            .unwrap()
            .tasks_deleted,
        1
    );
    assert_eq!(
        store
            .maintenance_prune(prune(1, 1))
            .await
            .unwrap()
            .tasks_deleted,
        1
    );
    let c = store.task_counts().await.unwrap();
    assert_eq!((c.succeeded, c.dead, c.cancelled), (0, 0, 0));
}
