//! The conformance suites on PostgreSQL, one fresh database per test.

use std::sync::Arc;

use weir_core::Store;
use weir_store_sql::{PostgresDriver, StoreOptions};
use weir_testkit::PgDatabase;

/// A fresh store on its own database (dropped with the returned guard).
async fn setup() -> (Arc<dyn Store>, PgDatabase) {
    let db = PgDatabase::create().await;
    let store = weir_store_sql::open(&StoreOptions::new(db.url()))
        .await
        .unwrap();
    (Arc::new(store), db)
}

/// A fresh driver on its own database.
async fn setup_driver() -> (Arc<dyn weir_store::Driver>, PgDatabase) {
    let db = PgDatabase::create().await;
    let driver = PostgresDriver::open(&StoreOptions::new(db.url()))
        .await
        .unwrap();
    (Arc::new(driver), db)
}

crate::conformance_suite!(setup);
crate::driver_suite!(setup_driver);

/// The claim query walks the partial claim index, not the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_query_uses_the_claim_index() {
    let db = PgDatabase::create().await;
    let driver = PostgresDriver::open(&StoreOptions::new(db.url()))
        .await
        .unwrap();
    let pool = driver.pool();
    // Enough rows, most of them running, that the planner has a real choice.
    sqlx::query(
        "INSERT INTO tasks (id, kind, input, state, max_attempts, created_at, run_at) \
         SELECT gen_random_uuid(), 'md5', '{}'::jsonb, \
                CASE WHEN g % 10 = 0 THEN 'queued' ELSE 'running' END, 3, now(), now() \
         FROM generate_series(1, 20000) g",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE tasks").execute(pool).await.unwrap();
    sqlx::query("INSERT INTO queues (name, concurrency) VALUES ('limited', 1)")
        .execute(pool)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN {}",
        weir_store_sql::postgres::task_claim_sql_for_any_task()
    ))
    .bind("w")
    .bind(chrono::Utc::now())
    .bind(chrono::Utc::now())
    .bind(10i64)
    .fetch_all(pool)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("tasks_claim"),
        "claim plan does not use tasks_claim:\n{plan}"
    );
    assert!(
        !plan.contains("Seq Scan on tasks"),
        "claim plan scans the table:\n{plan}"
    );
}

/// Regression: a drain of a large backlog slowed as it went, each claim
/// walking the index entries of every task claimed before it. A claimer now
/// starts where its last full batch ended; a higher-priority task another
/// process queues meanwhile is still found by the periodic walk from the
/// front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_task_from_another_process_is_claimed_during_a_drain() {
    use chrono::Utc;
    use weir_store::Driver;
    let db = PgDatabase::create().await;
    let claimer = PostgresDriver::open(&StoreOptions::new(db.url()))
        .await
        .unwrap();
    let submitter = PostgresDriver::open(&StoreOptions::new(db.url()))
        .await
        .unwrap();
    let now = Utc::now();
    let backlog: Vec<_> = (0..2000)
        .map(|i| crate::conformance::insert_params(weir_core::Builtin::Md5, &i.to_string(), now))
        .collect();
    submitter
        .task_insert_rows(&backlog.iter().collect::<Vec<_>>(), false)
        .await
        .unwrap();
    let batch = crate::conformance::claim("w", 5, now);
    assert_eq!(claimer.claim_unlimited(&batch, &[]).await.unwrap().len(), 5);

    let mut urgent = crate::conformance::insert_params(weir_core::Builtin::Md5, "urgent", now);
    urgent.priority = 9;
    submitter.task_insert_rows(&[&urgent], false).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut claims = 0;
    loop {
        let got = claimer.claim_unlimited(&batch, &[]).await.unwrap();
        claims += 1;
        if got.iter().any(|c| c.task.id == urgent.id) {
            break;
        }
        assert_eq!(
            got.len(),
            5,
            "the backlog ran out before the urgent task was claimed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the urgent task was not claimed after {claims} claims"
        );
    }
}

/// The conformance suite again, through pgbouncer in transaction pooling
/// mode (Debian's 1.18: no prepared statements there): the schema made
/// directly, then every call through the pooler.
mod through_pgbouncer {
    use super::*;

    async fn setup() -> (Arc<dyn Store>, PgDatabase) {
        let db = PgDatabase::create().await;
        drop(
            weir_store_sql::open(&StoreOptions::new(db.url()))
                .await
                .unwrap(),
        );
        let mut options = StoreOptions::new(db.pooled_url());
        options.transaction_pooler = true;
        let store = weir_store_sql::open(&options).await.unwrap();
        (Arc::new(store), db)
    }

    crate::conformance_suite!(setup);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unmigrated_schema_is_not_migrated_through_the_pooler() {
        let db = PgDatabase::create().await;
        let mut options = StoreOptions::new(db.pooled_url());
        options.transaction_pooler = true;
        let Err(e) = weir_store_sql::open(&options).await else {
            panic!("opened an empty schema through the pooler");
        };
        assert!(e.to_string().contains("weir migrate"), "{e}");
    }
}

/// A URL through pgbouncer in transaction mode without `--transaction-pooler`
/// once answered every other call with `prepared statement "sqlx_s_1"
/// already exists`: the store finds the pooler itself and runs as with the
/// flag, so concurrent callers work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_pooler_is_found_without_the_flag() {
    use weir_core::*;
    let db = PgDatabase::create().await;
    drop(
        weir_store_sql::open(&StoreOptions::new(db.url()))
            .await
            .unwrap(),
    );
    let options = StoreOptions::new(db.pooled_url());
    assert!(!options.transaction_pooler);
    let store: Arc<dyn Store> = Arc::new(weir_store_sql::open(&options).await.unwrap());
    let now = chrono::Utc::now();
    let calls = (0..40).map(|i| {
        let store = store.clone();
        async move {
            let p = crate::conformance::insert_params(Builtin::Md5, &format!("pooled-{i}"), now);
            let id = p.id;
            store.task_insert(p).await.unwrap();
            store.task_get(id).await.unwrap().unwrap();
            store.task_counts().await.unwrap();
        }
    });
    futures_util::future::join_all(calls).await;
    assert_eq!(store.task_counts().await.unwrap().queued, 40);
    let pooled = PostgresDriver::open(&options).await.unwrap();
    assert!(pooled.through_transaction_pooler());
    // And PostgreSQL itself is not mistaken for one.
    let direct = PostgresDriver::open(&StoreOptions::new(db.url()))
        .await
        .unwrap();
    assert!(!direct.through_transaction_pooler());
}

/// `weir_enqueue` (plpgsql, migration 0020) restates the submission rules
/// SQL can apply; each bound it states is the one the Rust submitter uses,
/// so a change to one side fails here instead of drifting.
#[test]
fn sql_enqueue_states_the_submitters_own_bounds() {
    use weir_store::submission::{MAX_ATTEMPTS_LIMIT, MAX_BACKOFF_CAP, MAX_CONCURRENCY_KEY_BYTES};
    let sql = include_str!("../../migrations/postgres/0020_enqueue.sql");
    for bound in [
        format!("max_attempts NOT BETWEEN 1 AND {MAX_ATTEMPTS_LIMIT}"),
        format!("octet_length(ckey) NOT BETWEEN 1 AND {MAX_CONCURRENCY_KEY_BYTES}"),
        format!("cap_ms > {}", MAX_BACKOFF_CAP.as_millis()),
        format!(
            "[A-Za-z0-9_.:-]{{1,{}}}",
            weir_core::task_type::MAX_QUEUE_NAME_BYTES
        ),
    ] {
        assert!(sql.contains(&bound), "0020_enqueue.sql lacks {bound:?}");
    }
}

/// A limit or a pause set by one process (an API node) holds at once for a
/// worker in another, even one whose cache of limited queues is fresh: the
/// fast claim reads which queues are limited in its own statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_set_elsewhere_holds_for_the_very_next_claim() {
    use weir_core::{Builtin, QueueLimits};
    let db = PgDatabase::create().await;
    let open = || async {
        Arc::new(
            weir_store_sql::open(&StoreOptions::new(db.url()))
                .await
                .unwrap(),
        ) as Arc<dyn Store>
    };
    let (worker, api) = (open().await, open().await);
    let now = chrono::Utc::now();
    // The worker has just claimed: it knows of no limited queue.
    assert!(worker
        .task_claim(crate::conformance::claim("w", 10, now))
        .await
        .unwrap()
        .is_empty());
    let limits = |concurrency, paused| QueueLimits {
        name: "reports".into(),
        concurrency,
        rate_per_second: None,
        burst: None,
        paused,
    };
    api.queue_configure(&limits(Some(1), false)).await.unwrap();
    for i in 0..4 {
        let mut p = crate::conformance::insert_params(Builtin::Md5, &format!("r{i}"), now);
        p.queue = "reports".into();
        api.task_insert(p).await.unwrap();
    }
    let claimed = worker
        .task_claim(crate::conformance::claim("w", 10, now))
        .await
        .unwrap();
    assert!(
        claimed.len() <= 1,
        "took {} under a limit of 1",
        claimed.len()
    );
    // A pause the same way.
    api.queue_pause("reports", true).await.unwrap();
    api.queue_configure(&limits(None, false)).await.unwrap();
    assert!(worker
        .task_claim(crate::conformance::claim("w2", 10, now))
        .await
        .unwrap()
        .is_empty());
}
