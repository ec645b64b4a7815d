//! Users steering tasks and the maintenance leader's work: idempotent
//! submissions, retry and cancel, listing, the leader lease and pruning.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use uuid::Uuid;
use weir_core::{
    LeaderAcquireParams, MaintenancePruneParams, MaintenancePruneReport, RetryPolicy, Store,
    StoreError, Task, TaskChange, TaskId, TaskInsertParams, TaskListParams, TaskState,
};

use super::rows::{task_from_row, FINISHED_TASK_COLUMNS, LIVE_TASK_COLUMNS};
use super::{err, PostgresStore};
use crate::shared::{lease_end, unchanged};

impl PostgresStore {
    pub(super) async fn idempotent_insert(
        &self,
        p: TaskInsertParams,
        key: &str,
        window: std::time::Duration,
    ) -> Result<(Task, bool), StoreError> {
        let oldest = p.now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let mut tx = self.pool.begin().await.map_err(err)?;
        // A key past its window, or whose task the cleaner has deleted, is free again.
        sqlx::query(
            "DELETE FROM idempotency_keys k WHERE k.key = $1 AND (k.created_at < $2 \
                 OR (NOT EXISTS (SELECT 1 FROM tasks WHERE id = k.task_id) \
                     AND NOT EXISTS (SELECT 1 FROM tasks_finished WHERE id = k.task_id)))",
        )
        .bind(key)
        .bind(oldest)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        // A concurrent call with the same key waits here on the unique index
        // until the first commits, then finds its row.
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (key, task_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(p.id.0)
        .bind(p.now)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected()
            == 1;
        if !claimed {
            let existing: Uuid =
                sqlx::query_scalar("SELECT task_id FROM idempotency_keys WHERE key = $1")
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(err)?;
            tx.commit().await.map_err(err)?;
            let id = TaskId(existing);
            let task = self.task_get(id).await?.ok_or_else(|| {
                StoreError::Corrupt(format!("idempotency key names missing task {id}"))
            })?;
            return Ok((task, false));
        }
        let sql = format!(
            "INSERT INTO tasks (id, kind, input, state, max_attempts, priority, cache_key, created_at, \
                                run_at, queue, concurrency_key, backoff_base_ms, backoff_cap_ms, \
                                timeout_ms) \
             VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT DO NOTHING RETURNING {LIVE_TASK_COLUMNS}"
        );
        let row = sqlx::query(&sql)
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
            .bind(RetryPolicy::to_millis(p.backoff).0)
            .bind(RetryPolicy::to_millis(p.backoff).1)
            .bind(p.timeout.map(|t| t.as_millis() as i64))
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
        if let Some(row) = row {
            tx.commit().await.map_err(err)?;
            self.wake_workers();
            return Ok((task_from_row(&row)?, true));
        }
        // The same input is queued or running: the key names that task.
        let sql = format!("SELECT {LIVE_TASK_COLUMNS} FROM tasks WHERE cache_key = $1");
        let existing = sqlx::query(&sql)
            .bind(&p.cache_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?
            .ok_or_else(|| {
                StoreError::Unavailable("a matching task finished meanwhile; retry".into())
            })?;
        let task = task_from_row(&existing)?;
        sqlx::query("UPDATE idempotency_keys SET task_id = $2 WHERE key = $1")
            .bind(key)
            .bind(task.id.0)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok((task, false))
    }

    pub(super) async fn retry_dead(
        &self,
        id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<TaskChange, StoreError> {
        // Back into the hot table. tasks_finished keeps no lease token, so the
        // new one starts from the clock (in ms): above any token an attempt of
        // the task's earlier life can hold, so such a late completion stays fenced off.
        let sql = format!(
            "WITH moved AS (DELETE FROM tasks_finished WHERE id = $1 AND state = 'dead' RETURNING *) \
             INSERT INTO tasks (id, kind, input, state, error, attempts, max_attempts, priority, \
                                worker_id, lease_token, created_at, run_at, started_at, errors, \
                                queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms) \
             SELECT id, kind, input, 'queued', error, 0, max_attempts, priority, worker_id, \
                    (extract(epoch FROM $2::timestamptz) * 1000)::bigint, created_at, $2, started_at, \
                    errors, queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms \
             FROM moved RETURNING {LIVE_TASK_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        match row {
            Some(row) => {
                self.wake_workers();
                Ok(TaskChange::Changed(Box::new(task_from_row(&row)?)))
            }
            None => unchanged(self, id).await,
        }
    }

    pub(super) async fn cancel_unfinished(
        &self,
        id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<TaskChange, StoreError> {
        // Out of the hot table: a running attempt's completion and lease
        // renewals no longer find their row, so they are refused.
        let sql = format!(
            "WITH moved AS (DELETE FROM tasks WHERE id = $1 RETURNING *) \
             INSERT INTO tasks_finished (id, kind, input, state, result, error, attempts, max_attempts, \
                                         priority, worker_id, created_at, run_at, started_at, completed_at, \
                                         errors, queue, concurrency_key, backoff_base_ms, \
                                         backoff_cap_ms, timeout_ms) \
             SELECT id, kind, input, 'cancelled', NULL, error, attempts, max_attempts, priority, \
                    worker_id, created_at, run_at, started_at, $2, errors, queue, concurrency_key, \
                    backoff_base_ms, backoff_cap_ms, timeout_ms \
             FROM moved \
             RETURNING {FINISHED_TASK_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        match row {
            Some(row) => Ok(TaskChange::Changed(Box::new(task_from_row(&row)?))),
            None => unchanged(self, id).await,
        }
    }

    pub(super) async fn acquire_leader(&self, p: LeaderAcquireParams) -> Result<bool, StoreError> {
        // Take it when free or expired; renew it when already ours.
        let holder: Option<String> = sqlx::query_scalar(
            "INSERT INTO leaders (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leaders.holder = excluded.holder OR leaders.expires_at < $4 \
             RETURNING holder",
        )
        .bind(&p.name)
        .bind(&p.holder)
        .bind(lease_end(p.now, p.ttl))
        .bind(p.now)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        Ok(holder.as_deref() == Some(p.holder.as_str()))
    }

    pub(super) async fn prune(
        &self,
        p: MaintenancePruneParams,
    ) -> Result<MaintenancePruneReport, StoreError> {
        // Finished tasks live in tasks_finished: deleting old ones never
        // touches the hot table.
        let tasks_deleted = sqlx::query(
            "DELETE FROM tasks_finished WHERE id IN (SELECT id FROM tasks_finished \
             WHERE completed_at < $1 ORDER BY completed_at LIMIT $2)",
        )
        .bind(p.finished_before)
        .bind(p.limit)
        .execute(&self.pool)
        .await
        .map_err(err)?
        .rows_affected();
        // Keys of tasks past the retention: their tasks are gone (or going).
        let idempotency_keys_deleted = sqlx::query(
            "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys \
             WHERE created_at < $1 LIMIT $2)",
        )
        .bind(p.finished_before)
        .bind(p.limit)
        .execute(&self.pool)
        .await
        .map_err(err)?
        .rows_affected();
        let cache_deleted = sqlx::query(
            "DELETE FROM cache WHERE key IN (SELECT key FROM cache WHERE expires_at <= $1 LIMIT $2)",
        )
        .bind(p.now)
        .bind(p.limit)
        .execute(&self.pool)
        .await
        .map_err(err)?
        .rows_affected();
        let workers_marked_offline = sqlx::query(
            "UPDATE workers SET status = 'offline', active_tasks = 0, current_task = NULL \
             WHERE status <> 'offline' AND last_heartbeat_at < $1",
        )
        .bind(p.workers_silent_since)
        .execute(&self.pool)
        .await
        .map_err(err)?
        .rows_affected();
        Ok(MaintenancePruneReport {
            tasks_deleted,
            cache_deleted,
            workers_marked_offline,
            idempotency_keys_deleted,
        })
    }

    pub(super) async fn list_page(&self, p: TaskListParams) -> Result<Vec<Task>, StoreError> {
        // Live and finished tasks are in different tables; a state filter
        // picks one, no filter reads both.
        let live = !matches!(p.state, Some(s) if s.is_final());
        let finished = !matches!(p.state, Some(TaskState::Queued | TaskState::Running));
        let mut q = QueryBuilder::new("SELECT * FROM (");
        let mut first = true;
        for (table, columns, wanted) in [
            ("tasks", LIVE_TASK_COLUMNS, live),
            ("tasks_finished", FINISHED_TASK_COLUMNS, finished),
        ] {
            if !wanted {
                continue;
            }
            if !first {
                q.push(" UNION ALL ");
            }
            first = false;
            q.push(format!("(SELECT {columns} FROM {table} WHERE TRUE"));
            if let Some(state) = p.state {
                q.push(" AND state = ").push_bind(state.as_str());
            }
            if let Some(kind) = &p.kind {
                q.push(" AND kind = ").push_bind(kind.as_str().to_owned());
            }
            if let Some(before) = p.before {
                q.push(" AND id < ").push_bind(before.0);
            }
            q.push(" ORDER BY id DESC LIMIT ")
                .push_bind(p.limit)
                .push(")");
        }
        q.push(") t ORDER BY id DESC LIMIT ").push_bind(p.limit);
        let rows = q.build().fetch_all(&self.pool).await.map_err(err)?;
        rows.iter().map(task_from_row).collect()
    }
}
