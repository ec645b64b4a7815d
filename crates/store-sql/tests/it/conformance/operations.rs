//! What every backend must do for operators: the task browser's filters and
//! orders, bulk actions in bounded batches that resume, the audit log.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use weir_core::*;

use super::{claim, insert_params, success};

/// `n` tasks of `queue` claimed and failed on their only attempt, with `error`.
async fn dead_tasks(
    store: &Arc<dyn Store>,
    n: usize,
    queue: &str,
    error: &str,
    now: DateTime<Utc>,
) -> Vec<TaskId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let mut p = insert_params(Builtin::Md5, &format!("{queue}-{error}-{i}"), now);
        p.max_attempts = 1;
        p.queue = queue.into();
        ids.push(p.id);
        store.task_insert(p).await.unwrap();
    }
    let mut left = n;
    while left > 0 {
        let mut c = claim("w", 100, now);
        c.queues = Some(vec![queue.into()]);
        let claimed = store.task_claim(c).await.unwrap();
        assert!(!claimed.is_empty(), "{left} of {n} tasks not claimed");
        left -= claimed.len();
        let failed: Vec<TaskCompletion> = claimed
            .iter()
            .map(|t| TaskCompletion {
                id: t.id,
                lease_token: t.lease_token,
                outcome: TaskOutcome::Failed {
                    error: error.into(),
                    retry_at: None,
                },
                now,
            })
            .collect();
        store.task_complete_many(&failed).await.unwrap();
    }
    ids
}

fn listing(filter: TaskFilter, sort: TaskSort, limit: i64) -> TaskListParams {
    TaskListParams {
        filter,
        sort,
        after: None,
        limit,
    }
}

async fn ids_of(store: &Arc<dyn Store>, p: TaskListParams) -> Vec<TaskId> {
    store
        .task_list(p)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect()
}

pub async fn the_task_browser_filters_every_way_and_pages_by_finish_time(store: Arc<dyn Store>) {
    let start = Utc::now();
    let smtp = dead_tasks(&store, 2, "mail", "SMTP timeout after 30 s", start).await;
    let later = start + TimeDelta::seconds(10);
    let address = dead_tasks(&store, 1, "mail", "bad address 100%_sure", later).await;
    let mut p = insert_params(Builtin::Md5, "ok", later);
    p.queue = "reports".into();
    let ok = p.id;
    store.task_insert(p).await.unwrap();
    let mut c = claim("w", 1, later);
    c.queues = Some(vec!["reports".into()]);
    let t = store.task_claim(c).await.unwrap().remove(0);
    let finished_at = later + TimeDelta::seconds(5);
    store
        .task_complete_many(&[success(&t, finished_at, None)])
        .await
        .unwrap();
    let queued = insert_params(Builtin::Md5, "waiting", later);
    let queued_id = queued.id;
    store.task_insert(queued).await.unwrap();

    let by = |filter: TaskFilter| listing(filter, TaskSort::Created, 50);
    let mail = ids_of(
        &store,
        by(TaskFilter {
            queue: Some("mail".into()),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(mail, vec![address[0], smtp[1], smtp[0]]);
    // Error text: any case, and a user's `%` and `_` are text, not wildcards.
    let timeouts = ids_of(
        &store,
        by(TaskFilter {
            error: Some("smtp TIMEOUT".into()),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(timeouts, vec![smtp[1], smtp[0]]);
    let literal = ids_of(
        &store,
        by(TaskFilter {
            error: Some("100%_".into()),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(literal, vec![address[0]]);
    let wildcard = ids_of(
        &store,
        by(TaskFilter {
            error: Some("1%s".into()),
            ..Default::default()
        }),
    )
    .await;
    assert!(wildcard.is_empty(), "{wildcard:?}");
    // States, across the live and finished sides.
    let live = ids_of(
        &store,
        by(TaskFilter {
            state: Some(TaskState::Queued),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(live, vec![queued_id]);
    // Finish time: a window, and the order of finishing.
    let recent = ids_of(
        &store,
        by(TaskFilter {
            finished_after: Some(later),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(recent, vec![ok, address[0]]);
    let first_page = store
        .task_list(listing(TaskFilter::default(), TaskSort::Finished, 2))
        .await
        .unwrap();
    assert_eq!(
        first_page.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![ok, address[0]]
    );
    let last = &first_page[1];
    let next = ids_of(
        &store,
        TaskListParams {
            after: Some(TaskCursor {
                id: last.id,
                finished_at: last.completed_at,
            }),
            ..listing(TaskFilter::default(), TaskSort::Finished, 10)
        },
    )
    .await;
    assert_eq!(next, vec![smtp[1], smtp[0]]);
    // Creation time, and filters together.
    let created_late = ids_of(
        &store,
        by(TaskFilter {
            created_after: Some(later),
            queue: Some("mail".into()),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(created_late, vec![address[0]]);
    let created_early = ids_of(
        &store,
        by(TaskFilter {
            created_before: Some(later),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(created_early, vec![smtp[1], smtp[0]]);

    // A running task's page shows when its lease ends; a finished one's none.
    let mut p = insert_params(Builtin::Md5, "leased", later);
    p.queue = "leases".into();
    let leased = p.id;
    store.task_insert(p).await.unwrap();
    let mut c = claim("w", 1, later);
    c.queues = Some(vec!["leases".into()]);
    store.task_claim(c).await.unwrap();
    let running = store.task_get(leased).await.unwrap().unwrap();
    assert_eq!(running.state, TaskState::Running);
    let ends = running
        .lease_expires_at
        .expect("a running task's lease end");
    assert!(
        (ends - later - TimeDelta::seconds(15))
            .num_milliseconds()
            .abs()
            < 1000,
        "{ends}"
    );
    assert_eq!(
        store.task_get(ok).await.unwrap().unwrap().lease_expires_at,
        None
    );
}

/// Runs `holder`'s batches until none is left; the action afterwards.
async fn work_through(store: &Arc<dyn Store>, holder: &str, now: DateTime<Utc>) -> usize {
    let mut batches = 0;
    while store.bulk_work(holder, now).await.unwrap().is_some() {
        batches += 1;
        assert!(batches < 100, "bulk action never ends");
    }
    batches
}

fn bulk(action: BulkAction, ids: Option<Vec<TaskId>>, filter: TaskFilter) -> NewBulk {
    NewBulk {
        id: BulkId::new(),
        action,
        ids,
        filter,
        actor: "ops".into(),
        created_at: Utc::now(),
    }
}

pub async fn a_bulk_retry_queues_each_dead_task_once_in_bounded_batches(store: Arc<dyn Store>) {
    let now = Utc::now();
    let dead = dead_tasks(&store, 450, "default", "partner API down", now).await;
    let other = dead_tasks(&store, 3, "other", "partner API down", now).await;
    let job = store
        .bulk_start(bulk(
            BulkAction::Retry,
            None,
            TaskFilter {
                queue: Some("default".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(job.status, "running");
    // Made after the action started: not covered by it.
    let late = dead_tasks(&store, 1, "default", "partner API down", now).await;
    let batches = work_through(&store, "node-a", now).await;
    assert!(batches >= 3, "450 tasks in {batches} batches");
    let job = store.bulk_get(job.id).await.unwrap().unwrap();
    assert!(job.is_done(), "{job:?}");
    assert_eq!((job.processed, job.changed, job.skipped), (450, 450, 0));
    for id in &dead {
        let task = store.task_get(*id).await.unwrap().unwrap();
        assert_eq!(task.state, TaskState::Queued, "{id}");
        assert_eq!(task.attempts, 0);
    }
    for id in other.iter().chain(&late) {
        assert_eq!(
            store.task_get(*id).await.unwrap().unwrap().state,
            TaskState::Dead
        );
    }
    // Done is done: no batch runs again.
    assert!(store.bulk_work("node-a", now).await.unwrap().is_none());
    let listed = store.bulk_list(10).await.unwrap();
    assert_eq!(listed[0].id, job.id);
}

pub async fn a_bulk_action_left_by_a_stopped_node_resumes_elsewhere(store: Arc<dyn Store>) {
    let now = Utc::now();
    dead_tasks(&store, 250, "default", "boom", now).await;
    let job = store
        .bulk_start(bulk(BulkAction::Retry, None, TaskFilter::default()))
        .await
        .unwrap();
    // Node a does one batch, then stops.
    let after_one = store.bulk_work("node-a", now).await.unwrap().unwrap();
    assert!(!after_one.is_done());
    assert!(after_one.changed > 0 && after_one.changed < 250);
    // Held: another node leaves it alone until the lease ends.
    assert!(store.bulk_work("node-b", now).await.unwrap().is_none());
    let later = now + TimeDelta::seconds(11);
    work_through(&store, "node-b", later).await;
    let job = store.bulk_get(job.id).await.unwrap().unwrap();
    assert!(job.is_done());
    assert_eq!((job.processed, job.changed), (250, 250));
    assert_eq!(store.task_counts().await.unwrap().queued, 250);
}

pub async fn bulk_cancel_and_delete_act_on_the_ids_given_in_their_states(store: Arc<dyn Store>) {
    let now = Utc::now();
    let mut live = Vec::new();
    for i in 0..3 {
        let p = insert_params(Builtin::Md5, &format!("live-{i}"), now);
        live.push(p.id);
        store.task_insert(p).await.unwrap();
    }
    let dead = dead_tasks(&store, 1, "graveyard", "x", now).await[0];
    let mut given = live.clone();
    given.push(dead);
    given.push(live[0]); // named twice: looked at once
    let job = store
        .bulk_start(bulk(BulkAction::Cancel, Some(given), TaskFilter::default()))
        .await
        .unwrap();
    assert_eq!(job.ids, Some(4));
    work_through(&store, "n", now).await;
    let job = store.bulk_get(job.id).await.unwrap().unwrap();
    assert_eq!((job.processed, job.changed, job.skipped), (4, 3, 1));
    for id in &live {
        assert_eq!(
            store.task_get(*id).await.unwrap().unwrap().state,
            TaskState::Cancelled
        );
    }
    // A tenant's action over ids leaves other tenants' tasks be.
    let mut theirs = insert_params(Builtin::Md5, "theirs", now);
    theirs.tenant = Some("b".into());
    let theirs_id = theirs.id;
    store.task_insert(theirs).await.unwrap();
    let job = store
        .bulk_start(bulk(
            BulkAction::Cancel,
            Some(vec![theirs_id]),
            TaskFilter {
                tenant: Some("a".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    work_through(&store, "n", now).await;
    let job = store.bulk_get(job.id).await.unwrap().unwrap();
    assert_eq!((job.changed, job.skipped), (0, 1));
    assert_eq!(
        store.task_get(theirs_id).await.unwrap().unwrap().state,
        TaskState::Queued
    );

    let mut all = live.clone();
    all.push(dead);
    all.push(theirs_id);
    let job = store
        .bulk_start(bulk(BulkAction::Delete, Some(all), TaskFilter::default()))
        .await
        .unwrap();
    work_through(&store, "n", now).await;
    let job = store.bulk_get(job.id).await.unwrap().unwrap();
    // The queued one is not finished: kept.
    assert_eq!((job.changed, job.skipped), (4, 1));
    for id in live.iter().chain([&dead]) {
        assert!(
            store.task_get(*id).await.unwrap().is_none(),
            "{id} not deleted"
        );
    }
    assert!(store.task_get(theirs_id).await.unwrap().is_some());

    // More ids than a batch holds: each batch starts past the last.
    let many = dead_tasks(&store, 450, "many", "x", now).await;
    let job = store
        .bulk_start(bulk(
            BulkAction::Delete,
            Some(many.clone()),
            TaskFilter::default(),
        ))
        .await
        .unwrap();
    let batches = work_through(&store, "n", now).await;
    assert!(batches >= 3, "450 ids in {batches} batches");
    let job = store.bulk_get(job.id).await.unwrap().unwrap();
    assert_eq!((job.processed, job.changed, job.skipped), (450, 450, 0));
    for id in &many {
        assert!(
            store.task_get(*id).await.unwrap().is_none(),
            "{id} not deleted"
        );
    }
}

pub async fn the_audit_log_lists_newest_first_by_action(store: Arc<dyn Store>) {
    let now = Utc::now();
    for (i, action) in ["queue.pause", "task.retry", "queue.pause"]
        .iter()
        .enumerate()
    {
        store
            .audit_record(&AuditEntry {
                id: 0,
                at: now,
                actor: format!("key-{i}"),
                tenant: None,
                client_ip: Some("10.0.0.1".into()),
                action: action.to_string(),
                target: Some("emails".into()),
                detail: Some(json!({"n": i})),
                count: Some(i as i64),
            })
            .await
            .unwrap();
    }
    let all = store
        .audit_list(&AuditListParams {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let actors: Vec<&str> = all.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors, vec!["key-2", "key-1", "key-0"]);
    assert_eq!(all[0].detail, Some(json!({"n": 2})));
    assert_eq!(all[0].client_ip.as_deref(), Some("10.0.0.1"));
    let pauses = store
        .audit_list(&AuditListParams {
            action: Some("queue.pause".into()),
            before: Some(all[0].id),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(pauses.len(), 1);
    assert_eq!(pauses[0].actor, "key-0");
    // Kept a quarter: the cleaner's pass takes older entries.
    let mut old_entry = all[0].clone();
    old_entry.at = now - chrono::TimeDelta::days(91);
    old_entry.actor = "long-gone".into();
    store.audit_record(&old_entry).await.unwrap();
    store
        .maintenance_prune(MaintenancePruneParams {
            finished_before: now - chrono::TimeDelta::days(30),
            dead_before: None,
            cancelled_before: None,
            now,
            workers_silent_since: now - chrono::TimeDelta::days(30),
            limit: 100,
        })
        .await
        .unwrap();
    let kept = store
        .audit_list(&AuditListParams {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(kept.iter().all(|e| e.actor != "long-gone"));
}
