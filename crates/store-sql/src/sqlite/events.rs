//! Events on SQLite: multi-row inserts in one transaction; an id already
//! stored is skipped (`ON CONFLICT DO NOTHING`), so a batch written twice
//! stores each event once.

use sqlx::{QueryBuilder, Row, SqlitePool};
use weir_core::{NewEvent, StoreError, StoredEvent};

use super::err;
use super::rows::{millis, time};

/// Three bound parameters a row, well below SQLite's 32766 per statement.
const EVENT_ROWS_PER_STATEMENT: usize = 2_000;

pub(super) async fn insert_many(
    writer: &SqlitePool,
    events: &[NewEvent],
) -> Result<u64, StoreError> {
    if events.is_empty() {
        return Ok(0);
    }
    let mut tx = writer.begin().await.map_err(err)?;
    let mut inserted = 0;
    for chunk in events.chunks(EVENT_ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new("INSERT INTO events (id, body, received_at) ");
        q.push_values(chunk, |mut b, e| {
            b.push_bind(&e.id)
                .push_bind(&e.body)
                .push_bind(millis(e.received_at));
        });
        q.push(" ON CONFLICT (id) DO NOTHING");
        inserted += q
            .build()
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
    }
    tx.commit().await.map_err(err)?;
    Ok(inserted)
}

pub(super) async fn list_latest(
    reader: &SqlitePool,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, received_at, body FROM events ORDER BY received_at DESC, seq DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(reader)
    .await
    .map_err(err)?;
    rows.iter()
        .map(|r| {
            let body: String = r.try_get(2).map_err(err)?;
            Ok(StoredEvent {
                id: r.try_get(0).map_err(err)?,
                received_at: time(r.try_get(1).map_err(err)?)?,
                event: serde_json::from_str(&body)
                    .map_err(|e| StoreError::Corrupt(format!("event body: {e}")))?,
            })
        })
        .collect()
}

pub(super) async fn count(reader: &SqlitePool) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(reader)
        .await
        .map_err(err)
}
