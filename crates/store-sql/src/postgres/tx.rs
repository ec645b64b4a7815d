//! One PostgreSQL transaction, driven step by step by the store's claim and
//! submission policy. Limited queues are locked `FOR UPDATE SKIP LOCKED` and
//! keys with transaction-scoped advisory locks: a claimer skips what another
//! holds instead of waiting, so claimers cannot deadlock.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;
use weir_core::{
    RetryPolicy, StoreError, Task, TaskClaimParams, TaskCompletion, TaskId, TaskInsertParams,
};
use weir_store::{lease_end, AppliedCompletion, Claimed, DriverTx, HeldKey, LimitedQueue, Rescued};

use super::err;
use super::rows::{decode, ClaimedRow, TaskRow, FINISHED_TASK_COLUMNS, LIVE_TASK_COLUMNS};

pub(super) struct PostgresTx {
    pub(super) tx: Transaction<'static, Postgres>,
    /// False behind a transaction pooler: unnamed statements only.
    pub(super) named: bool,
    /// Told of every task this transaction queues.
    pub(super) hints: std::sync::Arc<super::claim_hint::ClaimHints>,
}

impl PostgresTx {
    pub(super) fn exec(&mut self) -> super::exec::TxExec<'_> {
        super::exec::TxExec {
            conn: &mut self.tx,
            named: self.named,
        }
    }

    /// Runs a statement that changes one task (binding its id, then the
    /// time) and returns the task as it is now.
    async fn change_one(
        &mut self,
        sql: &str,
        id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError> {
        let row: Option<TaskRow> = sqlx::query_as(sql)
            .bind(id.0)
            .bind(now)
            .fetch_optional(self.exec())
            .await
            .map_err(err)?;
        row.map(Task::try_from).transpose()
    }
}

from_row! { sqlx::postgres::PgRow =>
struct QueueRow {
    name: String,
    paused: bool,
    concurrency: Option<i32>,
    rate_per_second: Option<f64>,
    burst: Option<i32>,
    tokens: f64,
    refilled_at: Option<DateTime<Utc>>,
}}

#[async_trait]
impl DriverTx for PostgresTx {
    async fn limited_queues_lock(
        &mut self,
        only: Option<&[String]>,
    ) -> Result<Vec<LimitedQueue>, StoreError> {
        let rows: Vec<QueueRow> = sqlx::query_as(
            "SELECT name, paused, concurrency, rate_per_second, burst, tokens, refilled_at FROM queues \
             WHERE limited \
               AND ($1::text[] IS NULL OR name = ANY($1)) \
             ORDER BY name FOR UPDATE SKIP LOCKED",
        )
        .bind(only)
        .fetch_all(self.exec())
        .await
        .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|q| LimitedQueue {
                name: q.name,
                paused: q.paused,
                concurrency: q.concurrency,
                rate_per_second: q.rate_per_second,
                burst: q.burst,
                tokens: q.tokens,
                refilled_at: q.refilled_at,
            })
            .collect())
    }

    async fn running_in_queue(&mut self, queue: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE queue = $1 AND state = 'running'")
            .bind(queue)
            .fetch_one(self.exec())
            .await
            .map_err(err)
    }

    async fn bucket_save(
        &mut self,
        queue: &str,
        tokens: f64,
        refilled_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE queues SET tokens = $2, refilled_at = $3 WHERE name = $1")
            .bind(queue)
            .bind(tokens)
            .bind(refilled_at)
            .execute(self.exec())
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
            .bind(c.now)
            .bind(queue)
            .bind(&c.queues)
            .bind(limit)
            .bind(&c.types)
            .fetch_all(self.exec())
            .await
            .map_err(err)
    }

    async fn key_try_lock(&mut self, key: &str) -> Result<bool, StoreError> {
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 7))")
            .bind(format!("weir:concurrency_key:{key}"))
            .fetch_one(self.exec())
            .await
            .map_err(err)
    }

    async fn running_with_key(&mut self, key: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM tasks WHERE concurrency_key = $1 AND state = 'running'",
        )
        .bind(key)
        .fetch_one(self.exec())
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
            .bind(c.now)
            .bind(lease_end(c.now, c.lease))
            .bind(limit)
            .bind(queue)
            .bind(key)
            .bind(&c.queues)
            .bind(&c.types)
            .fetch_all(self.exec())
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
            "DELETE FROM idempotency_keys k WHERE k.key = $1 AND (k.created_at < $2 \
                 OR (NOT EXISTS (SELECT 1 FROM tasks WHERE id = k.task_id) \
                     AND NOT EXISTS (SELECT 1 FROM tasks_finished WHERE id = k.task_id)))",
        )
        .bind(key)
        .bind(oldest)
        .execute(self.exec())
        .await
        .map_err(err)?;
        // A concurrent call with the same key waits here on the unique index
        // until the first commits, then finds its row.
        let taken = sqlx::query(
            "INSERT INTO idempotency_keys (key, task_id, created_at, fingerprint) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(task.0)
        .bind(now)
        .bind(fingerprint)
        .execute(self.exec())
        .await
        .map_err(err)?
        .rows_affected()
            == 1;
        if taken {
            return Ok(None);
        }
        let (held, fingerprint): (Uuid, Option<String>) =
            sqlx::query_as("SELECT task_id, fingerprint FROM idempotency_keys WHERE key = $1")
                .bind(key)
                .fetch_one(self.exec())
                .await
                .map_err(err)?;
        Ok(Some(HeldKey {
            task: TaskId(held),
            fingerprint,
        }))
    }

    async fn idempotency_key_point(&mut self, key: &str, task: TaskId) -> Result<(), StoreError> {
        sqlx::query("UPDATE idempotency_keys SET task_id = $2 WHERE key = $1")
            .bind(key)
            .bind(task.0)
            .execute(self.exec())
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
             SELECT $1::uuid, $2::text, $3::jsonb, 'queued', $4::int, $5::int, $6::text, \
                    $7::timestamptz, $8::timestamptz, $9::text, $10::text, $11::bigint, \
                    $12::bigint, $13::bigint, $14::text \
             WHERE (SELECT 1 FROM tasks_finished WHERE id = $1::uuid) IS NULL \
             ON CONFLICT DO NOTHING RETURNING {LIVE_TASK_COLUMNS}"
        );
        let row: Option<TaskRow> = sqlx::query_as(&sql)
            .bind(p.id.0)
            .bind(p.kind.as_str())
            .bind(&p.input)
            .bind(p.max_attempts)
            .bind(p.priority)
            .bind(&p.cache_key)
            .bind(p.now)
            .bind(p.run_at)
            .bind(&p.queue)
            .bind(&p.concurrency_key)
            .bind(base)
            .bind(cap)
            .bind(p.timeout.map(|t| t.as_millis() as i64))
            .bind(&p.tenant)
            .fetch_optional(self.exec())
            .await
            .map_err(err)?;
        // Before commit, so a claim racing the commit walks from the front.
        self.hints
            .task_queued_at(&super::claim_hint::ClaimKey::of(p));
        row.map(Task::try_from).transpose()
    }

    async fn task_standing_for(
        &mut self,
        id: TaskId,
        cache_key: Option<&str>,
    ) -> Result<Option<Task>, StoreError> {
        let sql = format!(
            "SELECT * FROM ( \
                 (SELECT {FINISHED_TASK_COLUMNS}, 0 AS pick FROM tasks_finished WHERE id = $1) \
                 UNION ALL (SELECT {LIVE_TASK_COLUMNS}, 0 AS pick FROM tasks WHERE id = $1) \
                 UNION ALL (SELECT {LIVE_TASK_COLUMNS}, 1 AS pick FROM tasks WHERE cache_key = $2) \
             ) t ORDER BY pick LIMIT 1"
        );
        let row: Option<TaskRow> = sqlx::query_as(&sql)
            .bind(id.0)
            .bind(cache_key)
            .fetch_optional(self.exec())
            .await
            .map_err(err)?;
        row.map(Task::try_from).transpose()
    }

    async fn task_complete_many(
        &mut self,
        completions: &[TaskCompletion],
    ) -> Result<Vec<AppliedCompletion>, StoreError> {
        let hints = self.hints.clone();
        Ok(
            super::batch::complete_many(self.exec(), &hints, completions, true)
                .await?
                .applied,
        )
    }

    async fn task_rescue_expired(
        &mut self,
        now: DateTime<Utc>,
        error: &str,
    ) -> Result<Rescued, StoreError> {
        let (dead, requeued): (Vec<Uuid>, i64) =
            sqlx::query_as(include_str!("sql/rescue_expired.sql"))
                .bind(now)
                .bind(error)
                .fetch_one(self.exec())
                .await
                .map_err(err)?;
        if requeued > 0 {
            self.hints.forget_all();
        }
        Ok(Rescued {
            dead: dead.into_iter().map(TaskId).collect(),
            requeued: requeued as u64,
        })
    }

    async fn task_retry_dead(
        &mut self,
        id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError> {
        let sql = include_str!("sql/retry_dead.sql").replace("{columns}", LIVE_TASK_COLUMNS);
        let task = self.change_one(&sql, id, now).await?;
        self.hints.forget_all();
        Ok(task)
    }

    async fn task_cancel_live(
        &mut self,
        id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError> {
        let sql = include_str!("sql/cancel_live.sql").replace("{columns}", FINISHED_TASK_COLUMNS);
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
