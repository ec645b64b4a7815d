//! One SQLite write transaction, driven step by step by the store's claim
//! and submission policy. Taken with `BEGIN IMMEDIATE` on the single writer,
//! so nothing else writes until it ends: counts hold, and no queue or key
//! needs a lock of its own.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Sqlite, Transaction};
use weir_core::{
    RetryPolicy, StoreError, Task, TaskClaimParams, TaskCompletion, TaskId, TaskInsertParams,
    TaskOutcome, TaskState,
};
use weir_store::{lease_end, AppliedCompletion, Claimed, DriverTx, HeldKey, LimitedQueue, Rescued};

use super::rows::{decode, millis, task_id, time, ClaimedRow, TaskRow, TASK_COLUMNS};
use super::{err, json_list};

/// What a completion returns of the task: whether a limit counted it (a
/// concurrency key, a queue with limits).
macro_rules! returning_limited {
    () => {
        " RETURNING concurrency_key IS NOT NULL OR queue IN (SELECT name FROM queues WHERE limited)"
    };
}

pub(super) struct SqliteTx {
    pub(super) tx: Transaction<'static, Sqlite>,
}

from_row! { sqlx::sqlite::SqliteRow =>
struct QueueRow {
    name: String,
    paused: bool,
    concurrency: Option<i32>,
    rate_per_second: Option<f64>,
    burst: Option<i32>,
    tokens: f64,
    refilled_at: Option<i64>,
}}

#[async_trait]
impl DriverTx for SqliteTx {
    async fn limited_queues_lock(
        &mut self,
        only: Option<&[String]>,
    ) -> Result<Vec<LimitedQueue>, StoreError> {
        let rows: Vec<QueueRow> = sqlx::query_as(
            "SELECT name, paused, concurrency, rate_per_second, burst, tokens, refilled_at FROM queues \
             WHERE limited \
               AND (?1 IS NULL OR name IN (SELECT value FROM json_each(?1))) ORDER BY name",
        )
        .bind(json_list(only))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|q| {
                Ok(LimitedQueue {
                    name: q.name,
                    paused: q.paused,
                    concurrency: q.concurrency,
                    rate_per_second: q.rate_per_second,
                    burst: q.burst,
                    tokens: q.tokens,
                    refilled_at: q.refilled_at.map(time).transpose()?,
                })
            })
            .collect()
    }

    async fn running_in_queue(&mut self, queue: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE queue = ? AND state = 'running'")
            .bind(queue)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(err)
    }

    async fn bucket_save(
        &mut self,
        queue: &str,
        tokens: f64,
        refilled_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE queues SET tokens = ?, refilled_at = ? WHERE name = ?")
            .bind(tokens)
            .bind(millis(refilled_at))
            .bind(queue)
            .execute(&mut *self.tx)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn due_keys(
        &mut self,
        c: &TaskClaimParams,
        queue: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(include_str!("sql/due_keys.sql"))
            .bind(millis(c.now))
            .bind(queue)
            .bind(json_list(c.queues.as_deref()))
            .bind(limit)
            .bind(json_list(c.types.as_deref()))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(err)
    }

    /// The transaction holds the only writer: every key is ours.
    async fn key_try_lock(&mut self, _key: &str) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn running_with_key(&mut self, key: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM tasks WHERE concurrency_key = ? AND state = 'running'",
        )
        .bind(key)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(err)
    }

    async fn claim_filtered(
        &mut self,
        c: &TaskClaimParams,
        queue: Option<&str>,
        key: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let rows: Vec<ClaimedRow> = sqlx::query_as(include_str!("sql/claim_filtered.sql"))
            .bind(&c.worker_id)
            .bind(millis(c.now))
            .bind(millis(lease_end(c.now, c.lease)))
            .bind(limit)
            .bind(queue)
            .bind(key)
            .bind(json_list(c.queues.as_deref()))
            .bind(json_list(c.types.as_deref()))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(err)?;
        decode(rows)
    }

    async fn idempotency_key_take(
        &mut self,
        key: &str,
        fingerprint: Option<&str>,
        task: TaskId,
        now: DateTime<Utc>,
        oldest: DateTime<Utc>,
    ) -> Result<Option<HeldKey>, StoreError> {
        // A key past its window, or whose task the cleaner has deleted, is free again.
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE key = ?1 AND (created_at < ?2 \
                 OR NOT EXISTS (SELECT 1 FROM tasks WHERE id = idempotency_keys.task_id))",
        )
        .bind(key)
        .bind(millis(oldest))
        .execute(&mut *self.tx)
        .await
        .map_err(err)?;
        let taken = sqlx::query(
            "INSERT INTO idempotency_keys (key, task_id, created_at, fingerprint) \
             VALUES (?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(task.to_string())
        .bind(millis(now))
        .bind(fingerprint)
        .execute(&mut *self.tx)
        .await
        .map_err(err)?
        .rows_affected()
            == 1;
        if taken {
            return Ok(None);
        }
        let (held, fingerprint): (String, Option<String>) =
            sqlx::query_as("SELECT task_id, fingerprint FROM idempotency_keys WHERE key = ?")
                .bind(key)
                .fetch_one(&mut *self.tx)
                .await
                .map_err(err)?;
        Ok(Some(HeldKey {
            task: task_id(&held)?,
            fingerprint,
        }))
    }

    async fn idempotency_key_point(&mut self, key: &str, task: TaskId) -> Result<(), StoreError> {
        sqlx::query("UPDATE idempotency_keys SET task_id = ? WHERE key = ?")
            .bind(task.to_string())
            .bind(key)
            .execute(&mut *self.tx)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn task_insert_returning(
        &mut self,
        p: &TaskInsertParams,
    ) -> Result<Option<Task>, StoreError> {
        let (base, cap) = RetryPolicy::to_millis(p.backoff);
        let sql = format!(
            "INSERT INTO tasks (id, kind, input, state, max_attempts, priority, cache_key, created_at, \
                                run_at, queue, concurrency_key, backoff_base_ms, backoff_cap_ms, \
                                timeout_ms, tenant) \
             VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING RETURNING {TASK_COLUMNS}"
        );
        let row: Option<TaskRow> = sqlx::query_as(&sql)
            .bind(p.id.to_string())
            .bind(p.kind.as_str())
            .bind(p.input.to_string())
            .bind(p.max_attempts)
            .bind(p.priority)
            .bind(&p.cache_key)
            .bind(millis(p.now))
            .bind(millis(p.run_at))
            .bind(&p.queue)
            .bind(&p.concurrency_key)
            .bind(base)
            .bind(cap)
            .bind(p.timeout.map(|t| t.as_millis() as i64))
            .bind(&p.tenant)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(err)?;
        row.map(Task::try_from).transpose()
    }

    async fn task_standing_for(
        &mut self,
        id: TaskId,
        cache_key: Option<&str>,
    ) -> Result<Option<Task>, StoreError> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1 \
             UNION ALL SELECT {TASK_COLUMNS} FROM tasks \
                 WHERE cache_key = ?2 AND state IN ('queued', 'running') \
             LIMIT 1"
        );
        let row: Option<TaskRow> = sqlx::query_as(&sql)
            .bind(id.to_string())
            .bind(cache_key)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(err)?;
        row.map(Task::try_from).transpose()
    }

    async fn task_complete_many(
        &mut self,
        completions: &[TaskCompletion],
    ) -> Result<Vec<AppliedCompletion>, StoreError> {
        let mut applied = Vec::with_capacity(completions.len());
        for c in completions {
            let now = millis(c.now);
            let id = c.id.to_string();
            let done = match &c.outcome {
                TaskOutcome::Succeeded { result, cache } => {
                    let result = result.to_string();
                    let done: Option<bool> = sqlx::query_scalar(concat!(
                        "UPDATE tasks SET state = 'succeeded', result = ?, error = NULL, \
                             completed_at = ?, lease_expires_at = NULL \
                         WHERE id = ? AND lease_token = ? AND state = 'running'",
                        returning_limited!()
                    ))
                    .bind(&result)
                    .bind(now)
                    .bind(&id)
                    .bind(c.lease_token)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(err)?;
                    if let (Some(_), Some(cache)) = (done, cache) {
                        sqlx::query(
                            "INSERT INTO cache (key, value, created_at, expires_at) VALUES (?, ?, ?, ?) \
                             ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                                 created_at = excluded.created_at, expires_at = excluded.expires_at",
                        )
                        .bind(&cache.key)
                        .bind(&result)
                        .bind(now)
                        .bind(millis(cache.expires_at))
                        .execute(&mut *self.tx)
                        .await
                        .map_err(err)?;
                    }
                    done.map(|limited| (Some(TaskState::Succeeded), limited))
                }
                TaskOutcome::Failed { error, retry_at } => {
                    let (state, run_at, completed_at, ended) = match retry_at {
                        Some(at) => ("queued", Some(millis(*at)), None, None),
                        None => ("dead", None, Some(now), Some(TaskState::Dead)),
                    };
                    let done: Option<bool> = sqlx::query_scalar(concat!(
                        include_str!("sql/complete_failed.sql"),
                        returning_limited!()
                    ))
                    .bind(state)
                    .bind(error)
                    .bind(run_at)
                    .bind(completed_at)
                    .bind(error)
                    .bind(c.now.to_rfc3339())
                    .bind(&id)
                    .bind(c.lease_token)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(err)?;
                    done.map(|limited| (ended, limited))
                }
            };
            if let Some((ended, limited)) = done {
                // Embedded: looking the step up costs no round trip, so the
                // workflow code does it for every ended task.
                applied.push(AppliedCompletion {
                    id: c.id,
                    ended,
                    maybe_step: true,
                    limited,
                });
            }
        }
        Ok(applied)
    }

    async fn task_rescue_expired(
        &mut self,
        now: DateTime<Utc>,
        error: &str,
    ) -> Result<Rescued, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(include_str!("sql/rescue_expired.sql"))
            .bind(millis(now))
            .bind(now.to_rfc3339())
            .bind(error)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(err)?;
        let mut rescued = Rescued::default();
        for (id, state) in rows {
            match state.as_str() {
                "dead" => rescued.dead.push(task_id(&id)?),
                _ => rescued.requeued += 1,
            }
        }
        Ok(rescued)
    }

    async fn task_retry_dead(
        &mut self,
        id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError> {
        // The task's cache key is dropped when an equal input is live again
        // (keys are unique among live tasks).
        let sql = format!(
            "UPDATE tasks SET state = 'queued', attempts = 0, run_at = ?, completed_at = NULL, \
                 lease_expires_at = NULL, \
                 cache_key = CASE WHEN EXISTS (SELECT 1 FROM tasks live \
                     WHERE live.cache_key = tasks.cache_key AND live.state IN ('queued', 'running')) \
                     THEN NULL ELSE cache_key END \
             WHERE id = ? AND state = 'dead' RETURNING {TASK_COLUMNS}"
        );
        self.change_one(&sql, id, now).await
    }

    async fn task_cancel_live(
        &mut self,
        id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError> {
        // The lease token moves on, so a running attempt's completion is refused.
        let sql = format!(
            "UPDATE tasks SET state = 'cancelled', completed_at = ?, lease_token = lease_token + 1, \
                 lease_expires_at = NULL \
             WHERE id = ? AND state IN ('queued', 'running', 'waiting') RETURNING {TASK_COLUMNS}"
        );
        self.change_one(&sql, id, now).await
    }

    async fn tasks_delete_finished(&mut self, ids: &[TaskId]) -> Result<u64, StoreError> {
        self.delete_finished(ids).await
    }

    async fn bulk_advance(
        &mut self,
        id: weir_core::BulkId,
        holder: &str,
        progress: &weir_store::BulkProgress,
    ) -> Result<bool, StoreError> {
        self.advance_bulk(id, holder, progress).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(err)
    }
}

impl SqliteTx {
    /// Runs a statement changing one task (binding the time, then the id)
    /// and returns the task it changed.
    async fn change_one(
        &mut self,
        sql: &str,
        id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError> {
        let row: Option<TaskRow> = sqlx::query_as(sql)
            .bind(millis(now))
            .bind(id.to_string())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(err)?;
        row.map(Task::try_from).transpose()
    }
}
