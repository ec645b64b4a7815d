//! Queueing tasks on SQLite: multi-row inserts in one transaction; a row
//! whose id is stored, or whose cache key a live task holds (`cache_key` is
//! unique among queued and running tasks), is skipped.

use std::collections::{HashMap, HashSet};

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
    from_cache: bool,
) -> Result<Vec<TaskId>, StoreError> {
    let mut tx = writer.begin().await.map_err(err)?;
    // Under the write lock, so no result is cached between look and insert.
    let cached = match from_cache {
        true => cached_keys(&mut tx, params).await?,
        false => HashSet::new(),
    };
    let rows: Vec<_> = params
        .iter()
        .filter(|p| p.cache_key.as_ref().is_none_or(|k| !cached.contains(k)))
        .map(|p| (*p, "queued"))
        .collect();
    let inserted = task_rows(&mut tx, &rows).await?;
    tx.commit().await.map_err(err)?;
    Ok(inserted)
}

/// The cache keys among `params` whose result is cached, unexpired at the
/// submission's time.
async fn cached_keys(
    conn: &mut SqliteConnection,
    params: &[&TaskInsertParams],
) -> Result<HashSet<String>, StoreError> {
    let mut cached = HashSet::new();
    let keyed: Vec<&&TaskInsertParams> = params.iter().filter(|p| p.cache_key.is_some()).collect();
    for chunk in keyed.chunks(TASK_ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::new("SELECT key, expires_at FROM cache WHERE key IN (");
        let mut keys = q.separated(", ");
        for p in chunk {
            keys.push_bind(p.cache_key.as_deref());
        }
        q.push(")");
        let rows: Vec<(String, i64)> = q
            .build_query_as()
            .fetch_all(&mut *conn)
            .await
            .map_err(err)?;
        let expiry: HashMap<String, i64> = rows.into_iter().collect();
        for p in chunk {
            if let Some(k) = &p.cache_key {
                if expiry.get(k).is_some_and(|&at| at > millis(p.now)) {
                    cached.insert(k.clone());
                }
            }
        }
    }
    Ok(cached)
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
