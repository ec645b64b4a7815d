//! weir's storage backends behind [`weir_core::Store`], and the group-commit
//! writer that turns many concurrent request-log writes into few transactions.
//!
//! # Layout
//! - [`sqlite`]: the embedded backend (one file, WAL, one writer connection).
//! - [`postgres`]: the shared backend (SKIP LOCKED batch claims, batched
//!   completions, debounced NOTIFY wake-ups, a small hot table).
//! - [`group_commit`]: [`RequestLogWriter`], [`TaskInsertWriter`] and
//!   [`EventWriter`], group commit for request-log rows, task submissions and events.
//! - [`busy_retry`]: [`BusyRetryStore`], retrying calls through a busy database within a budget.
//! - [`cache_access`]: [`CacheAccessRecorder`], cache hit/miss statistics in batches.
//! - [`error`]: mapping driver errors onto [`weir_core::StoreError`].
//! - [`open`]: picks a backend from a database URL.

pub mod busy_retry;
pub mod cache_access;
pub mod error;
pub mod group_commit;
pub mod postgres;
mod shared;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

pub use busy_retry::{BusyRetry, BusyRetryStore};
pub use cache_access::CacheAccessRecorder;
pub use group_commit::{EventWriter, GroupCommit, RequestLogWriter, TaskInsertWriter};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
use weir_core::{Store, StoreError};

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// `sqlite://path/to/file.db` (created if missing) or `postgres://…`.
    pub database_url: String,
    /// Upper bound on pooled connections (readers, for SQLite).
    pub max_connections: u32,
    /// How long a caller waits for a pooled connection before `Unavailable`.
    pub acquire_timeout: Duration,
    /// Run pending migrations on open.
    pub migrate: bool,
}

impl StoreOptions {
    pub fn new(database_url: impl Into<String>) -> Self {
        StoreOptions {
            database_url: database_url.into(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            migrate: true,
        }
    }
}

/// Opens the backend the URL names.
pub async fn open(options: &StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    let url = options.database_url.as_str();
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(options).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PostgresStore::open(options).await?))
    } else {
        Err(StoreError::Internal(format!(
            "unsupported database URL {url:?}: expected sqlite://PATH or postgres://…"
        )))
    }
}
