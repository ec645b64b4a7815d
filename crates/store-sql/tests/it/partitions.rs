//! Finished tasks on PostgreSQL live in day partitions per state (migration
//! 0019): a task goes to its creation day's partition, a day is dropped
//! whole once its retention is over, and what must stay (a task of that day
//! finished late, a stored workflow's step) moves to the default partition
//! first and is pruned row by row from there.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::PgPool;
use weir_core::*;
use weir_store_sql::{PostgresDriver, StoreOptions};
use weir_testkit::PgDatabase;

use crate::conformance::{claim, insert_params, success};

async fn setup() -> (Arc<dyn Store>, PgPool, PgDatabase) {
    let db = PgDatabase::create().await;
    let store = weir_store_sql::open(&StoreOptions::new(db.url()))
        .await
        .unwrap();
    let pool = PgPool::connect(db.url()).await.unwrap();
    (Arc::new(store), pool, db)
}

fn day_of(state: &str, at: DateTime<Utc>) -> String {
    format!("tasks_finished_{state}_p{}", at.format("%Y%m%d"))
}

/// The partition a finished task's row is in.
async fn home(pool: &PgPool, id: TaskId) -> Option<String> {
    sqlx::query_scalar("SELECT tableoid::regclass::text FROM tasks_finished WHERE id = $1")
        .bind(id.0)
        .fetch_optional(pool)
        .await
        .unwrap()
}

async fn exists(pool: &PgPool, table: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Claims the one queued task and records its success at `at`.
async fn succeed_at(store: &Arc<dyn Store>, claimed_at: DateTime<Utc>, at: DateTime<Utc>) {
    let claimed = store.task_claim(claim("w", 1, claimed_at)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let done = store
        .task_complete_many(&[success(&claimed[0], at, None)])
        .await
        .unwrap();
    assert_eq!(done.len(), 1);
}

fn prune_at(now: DateTime<Utc>, retention: Duration) -> MaintenancePruneParams {
    MaintenancePruneParams {
        finished_before: now - retention,
        dead_before: Some(now - retention),
        cancelled_before: Some(now - retention),
        now,
        workers_silent_since: now,
        limit: 100,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_finished_tasks_is_dropped_whole_and_what_must_stay_moves_to_the_default() {
    let now = Utc::now();
    let (store, pool, _db) = setup().await;
    // Opening made today's partitions and two days ahead, for each state.
    for state in ["succeeded", "dead", "cancelled"] {
        let days: Vec<String> = sqlx::query_scalar("SELECT name FROM weir_finished_days($1)")
            .bind(state)
            .fetch_all(&pool)
            .await
            .unwrap();
        let expected: Vec<String> = (0..3)
            .map(|d| day_of(state, now + Duration::days(d)))
            .collect();
        assert_eq!(days, expected);
    }

    let plain = insert_params(Builtin::Md5, "plain", now);
    let plain_id = plain.id;
    store.task_insert(plain).await.unwrap();
    succeed_at(&store, now, now).await;
    assert_eq!(home(&pool, plain_id).await, Some(day_of("succeeded", now)));

    // A one-step workflow: its step's task stays while the workflow does.
    let mut step_task = insert_params(Builtin::Md5, "step", now);
    step_task.cache_key = None;
    let step_id = step_task.id;
    store
        .workflow_insert(NewWorkflow {
            id: WorkflowId::new(),
            name: Some("one".into()),
            tenant: None,
            now,
            steps: vec![NewStep {
                step_id: "only".into(),
                task: step_task,
                depends_on: vec![],
                on_parent_failure: ParentFailure::Cancel,
                with_parent_results: false,
            }],
        })
        .await
        .unwrap();
    succeed_at(&store, now, now).await;

    // Made today, finished three days later.
    let later = now + Duration::days(3);
    let late = insert_params(Builtin::Md5, "late", now);
    let late_id = late.id;
    store.task_insert(late).await.unwrap();
    succeed_at(&store, now, later).await;
    assert_eq!(home(&pool, late_id).await, Some(day_of("succeeded", now)));

    // Three days on, with a day's retention: today's partition is dropped;
    // the late task (finished a moment ago) and the step moved first.
    let report = store
        .maintenance_prune(prune_at(later, Duration::days(1)))
        .await
        .unwrap();
    assert_eq!(report.tasks_deleted, 1, "the plain task, with its day");
    assert!(!exists(&pool, &day_of("succeeded", now)).await);
    assert!(store.task_get(plain_id).await.unwrap().is_none());
    let default = Some("tasks_finished_succeeded_default".to_string());
    assert_eq!(home(&pool, late_id).await, default);
    assert_eq!(home(&pool, step_id).await, default);
    let late_task = store.task_get(late_id).await.unwrap().expect("kept");
    assert_eq!(late_task.state, TaskState::Succeeded);
    // Days ahead of the pass's own time were made.
    assert!(exists(&pool, &day_of("dead", later + Duration::days(2))).await);
    // The workflow went in that pass too; its step follows, row by row.
    assert_eq!(report.workflows_deleted, 1);
    let report = store
        .maintenance_prune(prune_at(later, Duration::days(1)))
        .await
        .unwrap();
    assert_eq!(report.tasks_deleted, 1);
    assert!(store.task_get(step_id).await.unwrap().is_none());
    // And the late one once its own retention is over.
    let report = store
        .maintenance_prune(prune_at(later + Duration::days(2), Duration::days(1)))
        .await
        .unwrap();
    assert_eq!(report.tasks_deleted, 1);
    assert!(store.task_get(late_id).await.unwrap().is_none());
}

/// A task made on a day already dropped still finishes (into the default
/// partition) and is read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_finishing_after_its_day_was_dropped_is_kept_in_the_default() {
    let now = Utc::now();
    let (store, pool, _db) = setup().await;
    let slow = insert_params(Builtin::Md5, "slow", now);
    let slow_id = slow.id;
    store.task_insert(slow).await.unwrap();
    let later = now + Duration::days(3);
    store
        .maintenance_prune(prune_at(later, Duration::days(1)))
        .await
        .unwrap();
    assert!(!exists(&pool, &day_of("succeeded", now)).await);
    succeed_at(&store, later, later).await;
    assert_eq!(
        home(&pool, slow_id).await.as_deref(),
        Some("tasks_finished_succeeded_default")
    );
    let task = store.task_get(slow_id).await.unwrap().expect("kept");
    assert_eq!(task.state, TaskState::Succeeded);
    assert_eq!(task.result, Some(json!({"md5": "x"})));
}

/// A day with more rows to keep than a drop may move (each move holds the
/// state's table) waits for a later pass instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_with_too_much_to_keep_is_left_for_a_later_pass() {
    let now = Utc::now();
    let (store, pool, _db) = setup().await;
    let later = now + Duration::days(3);
    let mut ids = Vec::new();
    for i in 0..3 {
        let t = insert_params(Builtin::Md5, &format!("late-{i}"), now);
        ids.push(t.id);
        store.task_insert(t).await.unwrap();
        succeed_at(&store, now, later).await;
    }
    // Today's day is over at `end`: only its partition is due.
    let end = (now.date_naive() + Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let drop = |carry_max: i32| {
        sqlx::query_scalar::<_, i64>("SELECT weir_finished_day_drop('succeeded', $1, $2)")
            .bind(end)
            .bind(carry_max)
            .fetch_one(&pool)
    };
    assert_eq!(drop(2).await.unwrap(), -1, "three to keep, two allowed");
    assert!(exists(&pool, &day_of("succeeded", now)).await);
    assert_eq!(
        drop(3).await.unwrap(),
        0,
        "kept all three, dropped the rest"
    );
    assert!(!exists(&pool, &day_of("succeeded", now)).await);
    for id in ids {
        assert!(store.task_get(id).await.unwrap().is_some());
    }
}

/// weir's sessions run without JIT: compiling a short statement costs more
/// than running it, and batches over the partitions are estimated dear
/// enough to trigger it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_run_without_jit() {
    let db = PgDatabase::create().await;
    let driver = PostgresDriver::open(&StoreOptions::new(db.url()))
        .await
        .unwrap();
    let jit: String = sqlx::query_scalar("SHOW jit")
        .fetch_one(driver.pool())
        .await
        .unwrap();
    assert_eq!(jit, "off");
}
