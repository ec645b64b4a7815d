//! Queueing tasks on SQLite: multi-row inserts in one transaction; a row
//! whose id is stored, or whose cache key a live task holds (`cache_key` is
//! unique among queued and running tasks), is skipped.

use sqlx::{QueryBuilder, SqliteConnection, SqlitePool};
use weir_core::{RetryPolicy, StoreError, TaskId, TaskInsertParams};
use weir_store::StandingTask;

use super::err;
use super::rows::{millis, task_id};

/// Task rows bind 16 parameters each; SQLite allows 32766 per statement.
const TASK_ROWS_PER_STATEMENT: usize = 1_000;

pub(super) async fn insert_rows(
    writer: &SqlitePool,
    params: &[&TaskInsertParams],
) -> Result<Vec<TaskId>, StoreError> {
    let mut tx = writer.begin().await.map_err(err)?;
    let rows: Vec<_> = params.iter().map(|p| (*p, "queued")).collect();
    let inserted = task_rows(&mut tx, &rows).await?;
    tx.commit().await.map_err(err)?;
    Ok(inserted)
}

/// Inserts tasks, each in the given state (`queued`, or `waiting` for a
/// workflow step with parents), skipping conflicts; returns the ids inserted.
pub(super) async fn task_rows(
    conn: &mut SqliteConnection,
    rows: &[(&TaskInsertParams, &str)],
) -> Result<Vec<TaskId>, StoreError> {
    let mut inserted = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(TASK_ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new(
            "INSERT INTO tasks (id, kind, input, state, max_attempts, priority, cache_key, \
             created_at, run_at, queue, concurrency_key, backoff_base_ms, backoff_cap_ms, \
             timeout_ms, tenant, trace_context) ",
        );
        q.push_values(chunk, |mut b, (p, state)| {
            let (base, cap) = RetryPolicy::to_millis(p.backoff);
            b.push_bind(p.id.to_string())
                .push_bind(p.kind.as_str())
                .push_bind(p.input.to_string())
                .push_bind(*state)
                .push_bind(p.max_attempts)
                .push_bind(p.priority)
                .push_bind(&p.cache_key)
                .push_bind(millis(p.now))
                .push_bind(millis(p.run_at))
                .push_bind(&p.queue)
                .push_bind(&p.concurrency_key)
                .push_bind(base)
                .push_bind(cap)
                .push_bind(p.timeout.map(|t| t.as_millis() as i64))
                .push_bind(&p.tenant)
                .push_bind(&p.trace);
        });
        // Any conflict: the same id (a resend) or the same input live.
        q.push(" ON CONFLICT DO NOTHING RETURNING id");
        let ids: Vec<String> = q
            .build_query_scalar()
            .fetch_all(&mut *conn)
            .await
            .map_err(err)?;
        for id in ids {
            inserted.push(task_id(&id)?);
        }
    }
    Ok(inserted)
}

/// Tasks with these ids (any state), and live tasks with these cache keys.
pub(super) async fn standing_for(
    writer: &SqlitePool,
    params: &[&TaskInsertParams],
) -> Result<Vec<StandingTask>, StoreError> {
    let mut found = Vec::new();
    // Read through the writer: the inserts that conflicted just committed there.
    for chunk in params.chunks(TASK_ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new(
            "SELECT id, CASE WHEN state IN ('queued', 'running') THEN cache_key END FROM tasks \
             WHERE id IN (",
        );
        let mut ids = q.separated(", ");
        for p in chunk {
            ids.push_bind(p.id.to_string());
        }
        q.push(") OR (state IN ('queued', 'running') AND cache_key IN (");
        let mut keys = q.separated(", ");
        keys.push("NULL");
        for p in chunk {
            if let Some(k) = &p.cache_key {
                keys.push_bind(k.clone());
            }
        }
        q.push("))");
        let rows: Vec<(String, Option<String>)> =
            q.build_query_as().fetch_all(writer).await.map_err(err)?;
        for (id, cache_key) in rows {
            found.push(StandingTask {
                id: task_id(&id)?,
                cache_key,
            });
        }
    }
    Ok(found)
}
