//! Queueing tasks on PostgreSQL: one statement for a whole batch. `tasks`
//! holds only queued and running tasks and `cache_key` is unique in it, so a
//! submission whose result is already being computed is skipped there
//! (`ON CONFLICT DO NOTHING`); an id already finished is skipped too.

use uuid::Uuid;
use weir_core::{RetryPolicy, StoreError, TaskId, TaskInsertParams};
use weir_store::StandingTask;

use super::err;

pub(super) async fn insert_rows(
    pool: &super::exec::PgExec,
    params: &[&TaskInsertParams],
    from_cache: bool,
) -> Result<Vec<TaskId>, StoreError> {
    let rows: Vec<_> = params.iter().map(|p| (*p, "queued")).collect();
    task_rows(pool, &rows, from_cache).await
}

/// Inserts tasks, each in the given state (`queued`, or `waiting` for a
/// workflow step with parents), skipping conflicts (and with `from_cache`,
/// cache keys with a result cached); returns the ids inserted.
pub(super) async fn task_rows<'c, E>(
    exec: E,
    rows: &[(&TaskInsertParams, &str)],
    from_cache: bool,
) -> Result<Vec<TaskId>, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    let n = rows.len();
    let mut states = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut inputs = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    let mut priorities = Vec::with_capacity(n);
    let mut cache_keys = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut run_at = Vec::with_capacity(n);
    let mut queues = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut bases = Vec::with_capacity(n);
    let mut caps = Vec::with_capacity(n);
    let mut timeouts = Vec::with_capacity(n);
    let mut tenants = Vec::with_capacity(n);
    let mut traces = Vec::with_capacity(n);
    for (p, state) in rows {
        states.push(*state);
        ids.push(p.id.0);
        kinds.push(p.kind.as_str());
        inputs.push(&p.input);
        attempts.push(p.max_attempts);
        priorities.push(p.priority);
        cache_keys.push(p.cache_key.as_deref());
        created.push(p.now);
        run_at.push(p.run_at);
        queues.push(p.queue.as_str());
        keys.push(p.concurrency_key.as_deref());
        let (base, cap) = RetryPolicy::to_millis(p.backoff);
        bases.push(base);
        caps.push(cap);
        timeouts.push(p.timeout.map(|t| t.as_millis() as i64));
        tenants.push(p.tenant.as_deref());
        traces.push(p.trace.as_deref());
    }
    let inserted: Vec<Uuid> = sqlx::query_scalar(include_str!("sql/insert_rows.sql"))
        .bind(ids)
        .bind(kinds)
        .bind(inputs)
        .bind(attempts)
        .bind(priorities)
        .bind(cache_keys)
        .bind(created)
        .bind(run_at)
        .bind(queues)
        .bind(keys)
        .bind(bases)
        .bind(caps)
        .bind(timeouts)
        .bind(tenants)
        .bind(states)
        .bind(traces)
        .bind(from_cache)
        .fetch_all(exec)
        .await
        .map_err(err)?;
    Ok(inserted.into_iter().map(TaskId).collect())
}

/// Tasks with these ids (live or finished), and live tasks with these cache keys.
pub(super) async fn standing_for(
    pool: &super::exec::PgExec,
    params: &[&TaskInsertParams],
) -> Result<Vec<StandingTask>, StoreError> {
    let ids: Vec<Uuid> = params.iter().map(|p| p.id.0).collect();
    let keys: Vec<&str> = params
        .iter()
        .filter_map(|p| p.cache_key.as_deref())
        .collect();
    let rows: Vec<(Uuid, Option<String>)> = sqlx::query_as(
        "SELECT id, cache_key FROM tasks WHERE id = ANY($1) OR cache_key = ANY($2) \
         UNION ALL SELECT id, NULL FROM tasks_finished WHERE id = ANY($1)",
    )
    .bind(ids)
    .bind(keys)
    .fetch_all(pool)
    .await
    .map_err(err)?;
    Ok(rows
        .into_iter()
        .map(|(id, cache_key)| StandingTask {
            id: TaskId(id),
            cache_key,
        })
        .collect())
}
