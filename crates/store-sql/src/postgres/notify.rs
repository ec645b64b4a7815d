//! Waking workers across processes with LISTEN/NOTIFY.
//!
//! A pending NOTIFY takes a global lock at commit, so inserts never notify
//! inside their own transaction. Instead each process has one producer: an
//! insert pokes it, and it sends one `pg_notify` per round trip however many
//! inserts arrived meanwhile (debounced). Its payload names the sender (a
//! token per driver: its own listener skips it, as the store woke its
//! workers already — else each insert woke them twice, and each worker
//! claimed twice), with `:k` when some of those tasks may have a concurrency
//! key (claims then look for keyed tasks). Listeners report to the store's
//! `Wakeups`; workers also poll, so a lost notification costs at most one
//! poll interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::Notify;
use weir_store::Wakeups;

/// The channel weir's task wake-ups travel on.
pub const CHANNEL: &str = "weir_task_inserted";

/// What the inserts ask of the producer: a NOTIFY, keyed or not.
pub struct Poke {
    notify: Notify,
    keyed: AtomicBool,
    /// This driver's token in the payloads it sends.
    sender: String,
}

impl Default for Poke {
    fn default() -> Self {
        Poke {
            notify: Notify::new(),
            keyed: AtomicBool::new(false),
            sender: uuid::Uuid::new_v4().simple().to_string(),
        }
    }
}

impl Poke {
    /// The token this driver's notifications carry.
    pub fn sender(&self) -> &str {
        &self.sender
    }

    pub fn poke(&self, keyed: bool) {
        // Set before the wake, so the round that follows sees it.
        if keyed {
            self.keyed.store(true, Ordering::Release);
        }
        self.notify.notify_one();
    }
}

/// Sends one NOTIFY per wake-up round, however many pokes arrived.
pub async fn run_producer(pool: super::exec::PgExec, poke: Arc<Poke>) {
    loop {
        poke.notify.notified().await;
        let payload = match poke.keyed.swap(false, Ordering::AcqRel) {
            true => format!("{}:k", poke.sender),
            false => poke.sender.clone(),
        };
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
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

/// What a notification's payload says: `None` when `own` sent it (its
/// workers are woken already), else whether keyed tasks may be due.
fn read_payload(payload: &str, own: &str) -> Option<bool> {
    // An earlier weir sends an empty payload: anything may be due.
    if payload.is_empty() {
        return Some(true);
    }
    let (sender, keyed) = match payload.strip_suffix(":k") {
        Some(sender) => (sender, true),
        None => (payload, false),
    };
    (sender != own).then_some(keyed)
}

/// Listens for wake-ups and reports each but those `own` sent; reconnects
/// on its own.
pub async fn run_listener(on: ListenOn, wakeups: Wakeups, own: String) {
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
        wakeups.woken(true);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    if let Some(keyed) = read_payload(n.payload(), &own) {
                        wakeups.woken(keyed);
                    }
                }
                // The connection dropped; sqlx reconnects on the next call,
                // and wake-ups sent meanwhile are lost: wake everyone.
                Ok(None) => wakeups.woken(true),
                Err(e) => {
                    tracing::debug!(error = %e, "LISTEN connection lost; reconnecting");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::read_payload;

    #[test]
    fn a_payload_names_its_sender_and_whether_keyed_tasks_may_be_due() {
        assert_eq!(read_payload("abc", "own"), Some(false));
        assert_eq!(read_payload("abc:k", "own"), Some(true));
        // Our own: the store woke its workers when it poked the producer.
        assert_eq!(read_payload("own", "own"), None);
        assert_eq!(read_payload("own:k", "own"), None);
        // An earlier weir's empty payload may concern anything.
        assert_eq!(read_payload("", "own"), Some(true));
    }
}
