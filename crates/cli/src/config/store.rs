//! `--database-url` and the pool: the store settings every role that opens
//! the store takes (`StoreArgs`).

use std::time::Duration;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Database URL, e.g. sqlite://weir-data/weir.db.
    #[arg(long, env = "WEIR_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Pooled database connections per process.
    #[arg(long, env = "WEIR_DB_MAX_CONNECTIONS", default_value_t = 8)]
    pub db_max_connections: u32,
    /// How long a caller waits for a pooled connection; API requests also retry
    /// a busy or unreachable database this long before answering 503.
    #[arg(long, env = "WEIR_DB_BUSY_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub db_busy_timeout: Duration,
    /// Do not run migrations on start.
    #[arg(long, env = "WEIR_NO_MIGRATE")]
    pub no_migrate: bool,
    /// The PostgreSQL URL goes through a transaction pooler (pgbouncer,
    /// pool_mode = transaction): each statement in its own transaction, no
    /// named prepared statements; `weir migrate` must then go direct.
    #[arg(long, env = "WEIR_TRANSACTION_POOLER")]
    pub transaction_pooler: bool,
    /// Beside a transaction pooler: a direct PostgreSQL URL for LISTEN, so
    /// workers wake at once (without it they poll).
    #[arg(long, env = "WEIR_LISTEN_DATABASE_URL")]
    pub listen_database_url: Option<String>,
    /// SQLite only: `full` syncs every commit to disk before it is
    /// acknowledged (survives a power loss); `normal` syncs at checkpoints
    /// only (survives a process crash, not a power loss; cheaper writes).
    #[arg(long, env = "WEIR_SQLITE_SYNCHRONOUS", default_value = "full")]
    pub sqlite_synchronous: weir_store_sql::SqliteSynchronous,
}

impl StoreArgs {
    /// The store options, with `default_url` when no URL was given.
    pub fn options(
        &self,
        default_url: Option<String>,
    ) -> anyhow::Result<weir_store_sql::StoreOptions> {
        let url =
            self.database_url.clone().or(default_url).ok_or_else(|| {
                anyhow::anyhow!("--database-url (or WEIR_DATABASE_URL) is required")
            })?;
        let mut options = weir_store_sql::StoreOptions::new(url);
        options.max_connections = self.db_max_connections.max(1);
        options.migrate = !self.no_migrate;
        options.acquire_timeout = self.db_busy_timeout;
        options.transaction_pooler = self.transaction_pooler;
        options.listen_database_url = self.listen_database_url.clone();
        options.sqlite_synchronous = self.sqlite_synchronous;
        Ok(options)
    }
}
