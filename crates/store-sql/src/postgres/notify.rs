//! Waking workers across processes with LISTEN/NOTIFY.
//!
//! A pending NOTIFY takes a global lock at commit, so inserts never notify
//! inside their own transaction. Instead each process has one producer: an
//! insert pokes it, and it sends one `pg_notify` per round trip however many
//! inserts arrived meanwhile (debounced). Listeners bump the store's local
//! watch channel; workers also poll, so a lost notification costs at most one
//! poll interval.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::{watch, Notify};

/// The channel weir's task wake-ups travel on.
pub const CHANNEL: &str = "weir_task_inserted";

/// Sends one NOTIFY per wake-up round, however many pokes arrived.
pub async fn run_producer(pool: super::exec::PgExec, poke: Arc<Notify>) {
    loop {
        poke.notified().await;
        let sent = sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&pool)
            .await;
        if let Err(e) = sent {
            // Workers fall back to polling; try again on the next insert.
            tracing::debug!(error = %e, "task wake-up NOTIFY failed");
        }
    }
}

/// Where LISTEN connects.
pub enum ListenOn {
    /// A connection of the pool's (straight to PostgreSQL).
    Pool(PgPool),
    /// Its own connection (`--listen-database-url`), beside a pooler.
    Direct(Box<PgConnectOptions>),
    /// Nowhere: workers poll.
    Nowhere,
}

/// Listens for wake-ups and bumps `inserted` for each; reconnects on its own.
pub async fn run_listener(on: ListenOn, inserted: watch::Sender<u64>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let connected = match &on {
            ListenOn::Pool(pool) => PgListener::connect_with(pool).await,
            ListenOn::Direct(options) => {
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_lazy_with((**options).clone());
                PgListener::connect_with(&pool).await
            }
            ListenOn::Nowhere => return,
        };
        let mut listener = match connected {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "LISTEN connection failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::debug!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        backoff = Duration::from_millis(50);
        // Anything inserted while we were not listening is found by this wake-up.
        inserted.send_modify(|n| *n = n.wrapping_add(1));
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => inserted.send_modify(|n| *n = n.wrapping_add(1)),
                // The connection dropped; sqlx reconnects on the next call,
                // and wake-ups sent meanwhile are lost: wake everyone.
                Ok(None) => inserted.send_modify(|n| *n = n.wrapping_add(1)),
                Err(e) => {
                    tracing::debug!(error = %e, "LISTEN connection lost; reconnecting");
                    break;
                }
            }
        }
    }
}
