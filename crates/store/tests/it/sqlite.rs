//! The conformance suite on SQLite, one fresh database file per test.

use std::sync::Arc;

use weir_core::Store;
use weir_store::{SqliteStore, StoreOptions};

use crate::conformance;

/// A fresh store in its own temp dir (kept alive by the returned guard).
async fn setup() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("weir.db").display());
    let store = SqliteStore::open(&StoreOptions::new(url)).await.unwrap();
    (Arc::new(store), dir)
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _dir) = setup().await;
                conformance::$name(store).await;
            }
        )*
    };
}

conformance_tests!(
    insert_then_get_round_trips,
    claim_never_hands_a_task_to_two_workers,
    claim_orders_by_priority_then_run_at,
    claim_skips_tasks_not_yet_due,
    complete_records_result_and_cache,
    stale_lease_token_is_rejected,
    completing_twice_is_idempotent,
    failure_retries_then_dies,
    expired_lease_is_rescued,
    release_requeues_without_spending_an_attempt,
    lease_extension_keeps_a_task_from_rescue,
    request_log_counts_per_node,
    worker_heartbeat_upserts,
    insert_wakes_waiting_workers,
);
