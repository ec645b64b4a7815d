//! Events on PostgreSQL: a batch is one statement over arrays, and an id
//! already stored is skipped (`ON CONFLICT DO NOTHING`), so writing a batch
//! twice — a client's retry, a buffered batch replayed after a crash — stores
//! each event once.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use weir_core::{NewEvent, StoreError, StoredEvent};

use super::err;

pub(super) async fn insert_many(
    pool: &super::exec::PgExec,
    events: &[NewEvent],
) -> Result<u64, StoreError> {
    if events.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(events.len());
    let mut bodies = Vec::with_capacity(events.len());
    let mut times = Vec::with_capacity(events.len());
    for e in events {
        ids.push(e.id.as_str());
        bodies.push(e.body.as_str());
        times.push(e.received_at);
    }
    // The text→jsonb cast parses each body once, on the server.
    let done = sqlx::query(
        "INSERT INTO events (id, body, received_at) \
         SELECT * FROM unnest($1::text[], $2::text[]::jsonb[], $3::timestamptz[]) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(ids)
    .bind(bodies)
    .bind(times)
    .execute(pool)
    .await
    .map_err(err)?;
    Ok(done.rows_affected())
}

pub(super) async fn list_latest(
    pool: &super::exec::PgExec,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, received_at, body FROM events ORDER BY received_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(err)?;
    rows.iter()
        .map(|r| {
            Ok(StoredEvent {
                id: r.try_get(0).map_err(err)?,
                received_at: r.try_get::<DateTime<Utc>, _>(1).map_err(err)?,
                event: r.try_get::<Value, _>(2).map_err(err)?,
            })
        })
        .collect()
}

pub(super) async fn count(pool: &super::exec::PgExec) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(pool)
        .await
        .map_err(err)
}
