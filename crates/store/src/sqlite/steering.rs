//! Users steering tasks and the maintenance leader's work: idempotent
//! submissions, retry and cancel, listing, the leader lease and pruning.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use weir_core::{
    LeaderAcquireParams, MaintenancePruneParams, MaintenancePruneReport, RetryPolicy, Store,
    StoreError, Task, TaskChange, TaskId, TaskInsertParams, TaskListParams,
};

use super::rows::{millis, task_from_row, TASK_COLUMNS};
use super::{err, SqliteStore};
use crate::shared::{lease_end, unchanged};

impl SqliteStore {
    pub(super) async fn idempotent_insert(
        &self,
        p: TaskInsertParams,
        key: &str,
        window: std::time::Duration,
    ) -> Result<(Task, bool), StoreError> {
        let now = millis(p.now);
        let oldest = now - i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let mut tx = self.writer.begin().await.map_err(err)?;
        // A key past its window, or whose task the cleaner has deleted, is free again.
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE key = ?1 AND (created_at < ?2 \
                 OR NOT EXISTS (SELECT 1 FROM tasks WHERE id = idempotency_keys.task_id))",
        )
        .bind(key)
        .bind(oldest)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (key, task_id, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(p.id.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected()
            == 1;
        if !claimed {
            let existing: String =
                sqlx::query_scalar("SELECT task_id FROM idempotency_keys WHERE key = ?")
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(err)?;
            tx.commit().await.map_err(err)?;
            let id: TaskId = existing
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("idempotency key's task id: {e}")))?;
            let task = self.task_get(id).await?.ok_or_else(|| {
                StoreError::Corrupt(format!("idempotency key names missing task {id}"))
            })?;
            return Ok((task, false));
        }
        let sql = format!(
            "INSERT INTO tasks (id, kind, input, state, max_attempts, priority, cache_key, created_at, \
                                run_at, queue, concurrency_key, backoff_base_ms, backoff_cap_ms, \
                                timeout_ms) \
             VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING RETURNING {TASK_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(p.id.to_string())
            .bind(p.kind.as_str())
            .bind(p.input.to_string())
            .bind(p.max_attempts)
            .bind(p.priority)
            .bind(&p.cache_key)
            .bind(now)
            .bind(millis(p.run_at))
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
            self.inserted.send_modify(|n| *n = n.wrapping_add(1));
            return Ok((task_from_row(&row)?, true));
        }
        // The same input is queued or running: the key names that task.
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE cache_key = ? AND state IN ('queued', 'running')"
        );
        let existing = sqlx::query(&sql)
            .bind(&p.cache_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?
            .ok_or_else(|| StoreError::Internal(format!("task {} was not inserted", p.id)))?;
        let task = task_from_row(&existing)?;
        sqlx::query("UPDATE idempotency_keys SET task_id = ? WHERE key = ?")
            .bind(task.id.to_string())
            .bind(key)
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
        let sql = format!(
            "UPDATE tasks SET state = 'queued', attempts = 0, run_at = ?, completed_at = NULL, \
                 lease_expires_at = NULL, \
                 cache_key = CASE WHEN EXISTS (SELECT 1 FROM tasks live \
                     WHERE live.cache_key = tasks.cache_key AND live.state IN ('queued', 'running')) \
                     THEN NULL ELSE cache_key END \
             WHERE id = ? AND state = 'dead' RETURNING {TASK_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(millis(now))
            .bind(id.to_string())
            .fetch_optional(&self.writer)
            .await
            .map_err(err)?;
        match row {
            Some(row) => {
                self.inserted.send_modify(|n| *n = n.wrapping_add(1));
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
        // The lease token moves on, so a running attempt's completion is refused.
        let sql = format!(
            "UPDATE tasks SET state = 'cancelled', completed_at = ?, lease_token = lease_token + 1, \
                 lease_expires_at = NULL \
             WHERE id = ? AND state IN ('queued', 'running') RETURNING {TASK_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(millis(now))
            .bind(id.to_string())
            .fetch_optional(&self.writer)
            .await
            .map_err(err)?;
        match row {
            Some(row) => Ok(TaskChange::Changed(Box::new(task_from_row(&row)?))),
            None => unchanged(self, id).await,
        }
    }

    pub(super) async fn acquire_leader(&self, p: LeaderAcquireParams) -> Result<bool, StoreError> {
        let now = millis(p.now);
        let until = millis(lease_end(p.now, p.ttl));
        // Take it when free or expired; renew it when already ours.
        let holder: Option<String> = sqlx::query_scalar(
            "INSERT INTO leaders (name, holder, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leaders.holder = excluded.holder OR leaders.expires_at < ?4 \
             RETURNING holder",
        )
        .bind(&p.name)
        .bind(&p.holder)
        .bind(until)
        .bind(now)
        .fetch_optional(&self.writer)
        .await
        .map_err(err)?;
        Ok(holder.as_deref() == Some(p.holder.as_str()))
    }

    pub(super) async fn prune(
        &self,
        p: MaintenancePruneParams,
    ) -> Result<MaintenancePruneReport, StoreError> {
        let tasks_deleted = sqlx::query(
            "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks \
             WHERE state IN ('succeeded', 'dead', 'cancelled') AND completed_at < ? LIMIT ?)",
        )
        .bind(millis(p.finished_before))
        .bind(p.limit)
        .execute(&self.writer)
        .await
        .map_err(err)?
        .rows_affected();
        // Keys of tasks past the retention: their tasks are gone (or going).
        let idempotency_keys_deleted = sqlx::query(
            "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys \
             WHERE created_at < ? LIMIT ?)",
        )
        .bind(millis(p.finished_before))
        .bind(p.limit)
        .execute(&self.writer)
        .await
        .map_err(err)?
        .rows_affected();
        let cache_deleted = sqlx::query(
            "DELETE FROM cache WHERE key IN (SELECT key FROM cache WHERE expires_at <= ? LIMIT ?)",
        )
        .bind(millis(p.now))
        .bind(p.limit)
        .execute(&self.writer)
        .await
        .map_err(err)?
        .rows_affected();
        let workers_marked_offline = sqlx::query(
            "UPDATE workers SET status = 'offline', active_tasks = 0, current_task = NULL \
             WHERE status <> 'offline' AND last_heartbeat_at < ?",
        )
        .bind(millis(p.workers_silent_since))
        .execute(&self.writer)
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
        let mut q = QueryBuilder::new(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1 = 1"));
        if let Some(state) = p.state {
            q.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(kind) = &p.kind {
            q.push(" AND kind = ").push_bind(kind.as_str().to_owned());
        }
        if let Some(before) = p.before {
            q.push(" AND id < ").push_bind(before.to_string());
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(p.limit);
        let rows = q.build().fetch_all(&self.reader).await.map_err(err)?;
        rows.iter().map(task_from_row).collect()
    }
}
