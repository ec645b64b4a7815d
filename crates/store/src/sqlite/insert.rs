//! Queueing tasks on SQLite: multi-row inserts in one transaction, idempotent
//! by id, and de-duplicated by input for cacheable kinds (`cache_key` is
//! unique among queued and running tasks): a submission whose result is
//! already being computed is folded into the task computing it. The single
//! writer makes the insert and the lookup one atomic step.

use std::collections::HashSet;

use sqlx::{QueryBuilder, SqliteConnection};
use weir_core::{RetryPolicy, Store, StoreError, Task, TaskId, TaskInsertParams};

use super::rows::millis;
use super::{err, SqliteStore, TASK_ROWS_PER_STATEMENT};

impl SqliteStore {
    pub(super) async fn insert_one(&self, p: TaskInsertParams) -> Result<Task, StoreError> {
        let ids = self.insert_many(std::slice::from_ref(&p)).await?;
        let id = ids.first().copied().unwrap_or(p.id);
        // Read through the writer's own commit: the reader pool may lag a moment.
        self.task_get(id)
            .await?
            .ok_or_else(|| StoreError::Internal(format!("task {id} vanished on insert")))
    }

    pub(super) async fn insert_many(
        &self,
        params: &[TaskInsertParams],
    ) -> Result<Vec<TaskId>, StoreError> {
        let mut tx = self.writer.begin().await.map_err(err)?;
        let mut inserted: HashSet<String> = HashSet::with_capacity(params.len());
        for chunk in params.chunks(TASK_ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::new(
                "INSERT INTO tasks (id, kind, input, state, max_attempts, priority, cache_key, \
                 created_at, run_at, queue, concurrency_key, backoff_base_ms, backoff_cap_ms, \
                 timeout_ms) ",
            );
            q.push_values(chunk, |mut b, p| {
                b.push_bind(p.id.to_string())
                    .push_bind(p.kind.as_str())
                    .push_bind(p.input.to_string())
                    .push_bind("queued")
                    .push_bind(p.max_attempts)
                    .push_bind(p.priority)
                    .push_bind(&p.cache_key)
                    .push_bind(millis(p.now))
                    .push_bind(millis(p.run_at))
                    .push_bind(&p.queue)
                    .push_bind(&p.concurrency_key)
                    .push_bind(RetryPolicy::to_millis(p.backoff).0)
                    .push_bind(RetryPolicy::to_millis(p.backoff).1)
                    .push_bind(p.timeout.map(|t| t.as_millis() as i64));
            });
            // Any conflict: the same id (a resend) or the same input live.
            q.push(" ON CONFLICT DO NOTHING RETURNING id");
            let ids: Vec<String> = q
                .build_query_scalar()
                .fetch_all(&mut *tx)
                .await
                .map_err(err)?;
            inserted.extend(ids);
        }
        let mut answers = Vec::with_capacity(params.len());
        for p in params {
            let id = p.id.to_string();
            if inserted.contains(&id) {
                answers.push(p.id);
            } else {
                answers.push(standing_for(&mut tx, p).await?);
            }
        }
        tx.commit().await.map_err(err)?;
        self.inserted.send_modify(|n| *n = n.wrapping_add(1));
        Ok(answers)
    }
}

/// The task a submission that was not inserted came to: itself (a resend),
/// or the live task with the same input.
async fn standing_for(
    tx: &mut SqliteConnection,
    p: &TaskInsertParams,
) -> Result<TaskId, StoreError> {
    let found: Option<String> = sqlx::query_scalar(
        "SELECT id FROM tasks WHERE id = ?1 \
         UNION ALL SELECT id FROM tasks WHERE cache_key = ?2 AND state IN ('queued', 'running') \
         LIMIT 1",
    )
    .bind(p.id.to_string())
    .bind(&p.cache_key)
    .fetch_optional(&mut *tx)
    .await
    .map_err(err)?;
    let id = found.ok_or_else(|| {
        StoreError::Internal(format!("task {} was neither inserted nor found", p.id))
    })?;
    id.parse()
        .map(TaskId)
        .map_err(|e| StoreError::Corrupt(format!("task id {id:?}: {e}")))
}
