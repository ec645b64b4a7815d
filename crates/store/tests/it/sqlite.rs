//! The conformance suite on SQLite, one fresh database file per test.

use std::sync::Arc;

use weir_core::Store;
use weir_store::{SqliteStore, StoreOptions};

/// A fresh store in its own temp dir (kept alive by the returned guard).
async fn setup() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("weir.db").display());
    let store = SqliteStore::open(&StoreOptions::new(url)).await.unwrap();
    (Arc::new(store), dir)
}

crate::conformance_suite!(setup);
