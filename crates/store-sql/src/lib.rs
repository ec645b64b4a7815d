//! weir's SQL dialects under [`weir_store::SqlStore`]: each implements the
//! narrow [`weir_store::Driver`] interface, owns its migrations, and maps its
//! errors onto [`weir_core::StoreError`]. [`open`] picks one from a URL.
//!
//! # Layout
//! - [`sqlite`]: the embedded dialect (one file, WAL, one writer connection).
//! - [`postgres`]: the shared dialect (SKIP LOCKED batch claims, batched
//!   completions, debounced NOTIFY wake-ups, a small hot table).
//! - [`error`]: sqlx errors → `StoreError`, per dialect's contention codes.
//! - `filter`: the fast claim's inlined filter, shared by both dialects.
//! - `from_row`: `from_row!`, the dialects' row structs and their decoding.
//! - `migrations`: each dialect's migration files, embedded, and sqlx's
//!   migrator over them.
//!
//! SQL longer than a line lives in `.sql` files beside each dialect.

pub mod error;
mod filter;
#[macro_use]
mod from_row;
mod migrations;
pub mod postgres;
pub mod sqlite;

use std::time::Duration;

pub use postgres::PostgresDriver;
pub use sqlite::SqliteDriver;
use weir_core::StoreError;
use weir_store::SqlStore;

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
    /// PostgreSQL behind a transaction pooler (pgbouncer's
    /// `pool_mode = transaction`): every statement in a transaction of its
    /// own, no named prepared statements, no migrations through it.
    pub transaction_pooler: bool,
    /// Where LISTEN connects beside a transaction pooler (straight to
    /// PostgreSQL); without it, workers behind a pooler poll.
    pub listen_database_url: Option<String>,
    /// When SQLite syncs what it commits to the disk.
    pub sqlite_synchronous: SqliteSynchronous,
}

/// When SQLite syncs its write-ahead log (SQLite's `PRAGMA synchronous`, in
/// WAL mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqliteSynchronous {
    /// The log is synced at every commit, before any caller of it is
    /// answered: an acknowledged write survives a power loss or an OS crash.
    /// One sync per group-commit batch.
    #[default]
    Full,
    /// The log is synced only at checkpoints: an acknowledged write survives
    /// the process's crash, not a power loss or an OS crash (the last
    /// commits may be rolled back).
    Normal,
}

impl SqliteSynchronous {
    /// What the setting promises, for a start-up line.
    pub fn promise(self) -> &'static str {
        match self {
            SqliteSynchronous::Full => {
                "synchronous=full: every acknowledged write is synced to disk (survives a power loss)"
            }
            SqliteSynchronous::Normal => {
                "synchronous=normal: acknowledged writes survive a process crash, not a power loss"
            }
        }
    }
}

impl std::str::FromStr for SqliteSynchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(SqliteSynchronous::Full),
            "normal" => Ok(SqliteSynchronous::Normal),
            other => Err(format!("{other:?}: expected full or normal")),
        }
    }
}

impl std::fmt::Display for SqliteSynchronous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SqliteSynchronous::Full => "full",
            SqliteSynchronous::Normal => "normal",
        })
    }
}

impl StoreOptions {
    pub fn new(database_url: impl Into<String>) -> Self {
        StoreOptions {
            database_url: database_url.into(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            migrate: true,
            transaction_pooler: false,
            listen_database_url: None,
            sqlite_synchronous: SqliteSynchronous::Full,
        }
    }
}

/// Opens the store the URL names.
pub async fn open(options: &StoreOptions) -> Result<SqlStore, StoreError> {
    let url = options.database_url.as_str();
    if url.starts_with("sqlite:") {
        Ok(SqlStore::new(SqliteDriver::open(options).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(SqlStore::new(PostgresDriver::open(options).await?))
    } else {
        Err(StoreError::Internal(format!(
            "unsupported database URL {url:?}: expected sqlite://PATH or postgres://…"
        )))
    }
}

/// Opens the store the URL names, for callers that share it as a whole.
pub async fn open_shared(
    options: &StoreOptions,
) -> Result<std::sync::Arc<dyn weir_core::Store>, StoreError> {
    Ok(std::sync::Arc::new(open(options).await?))
}
