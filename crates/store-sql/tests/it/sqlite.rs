//! The conformance suites on SQLite, one fresh database file per test.

use std::sync::Arc;

use weir_core::Store;
use weir_store_sql::{SqliteDriver, StoreOptions};

fn url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("weir.db").display())
}

/// A fresh store in its own temp dir (kept alive by the returned guard).
async fn setup() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = weir_store_sql::open(&StoreOptions::new(url(&dir)))
        .await
        .unwrap();
    (Arc::new(store), dir)
}

/// A fresh driver in its own temp dir.
async fn setup_driver() -> (Arc<dyn weir_store::Driver>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let driver = SqliteDriver::open(&StoreOptions::new(url(&dir)))
        .await
        .unwrap();
    (Arc::new(driver), dir)
}

crate::conformance_suite!(setup);
crate::driver_suite!(setup_driver);
