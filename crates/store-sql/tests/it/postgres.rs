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
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN {}",
        weir_store_sql::postgres::TASK_CLAIM_SQL.replace(
            "{filter}",
            "concurrency_key IS NULL AND queue NOT IN ('limited')"
        )
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
