//! The conformance suite on PostgreSQL, one fresh database per test.

use std::sync::Arc;

use weir_core::Store;
use weir_store::{PostgresStore, StoreOptions};
use weir_testkit::PgDatabase;

/// A fresh store on its own database (dropped with the returned guard).
async fn setup() -> (Arc<dyn Store>, PgDatabase) {
    let db = PgDatabase::create().await;
    let store = PostgresStore::open(&StoreOptions::new(db.url()))
        .await
        .unwrap();
    (Arc::new(store), db)
}

crate::conformance_suite!(setup);
