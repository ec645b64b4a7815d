//! The embedded backend: one SQLite file in WAL mode.
//!
//! SQLite allows one writer at a time, so every write goes through a pool of
//! exactly one connection (writers queue in the pool instead of spinning on
//! `SQLITE_BUSY`), while reads use a separate pool of read-only connections that
//! WAL lets run beside the writer. `synchronous = NORMAL` in WAL mode survives a
//! killed process (what weir promises); only an OS crash or power loss may lose
//! the last commits.

mod claim;
mod events;
mod insert;
mod rows;
mod steering;

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, SqlitePool};
use tokio::sync::watch;
use weir_core::{
    CacheAccessParams, CacheEntryStats, CacheStats, ClaimedTask, CompletionOutcome, FinishedCounts,
    LeaderAcquireParams, MaintenancePruneParams, MaintenancePruneReport, NewEvent,
    NodeRequestCount, QueueDepth, QueueLimits, RequestLogEntry, RequestLogStats, Store, StoreError,
    StoredEvent, Task, TaskChange, TaskClaimParams, TaskCompletion, TaskCounts, TaskId,
    TaskInsertParams, TaskLeaseExtendParams, TaskListParams, TaskOutcome, TaskReleaseParams,
    TaskRescueParams, WorkerHeartbeatParams, WorkerInfo,
};

use crate::error::{from_sqlx, sqlite_contention};
use crate::StoreOptions;
use rows::{millis, task_from_row, worker_from_row, TASK_COLUMNS};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// What a rescued attempt's error says.
const LEASE_EXPIRED: &str = "lease expired: the worker running this attempt stopped responding";

/// SQLite allows at most 32766 bound parameters per statement; request-log
/// inserts are chunked well below that.
const REQUEST_ROWS_PER_STATEMENT: usize = 1_000;
/// Task rows bind 13 parameters each.
pub(crate) const TASK_ROWS_PER_STATEMENT: usize = 1_000;

/// The SQLite store.
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    inserted: watch::Sender<u64>,
    /// Queues with limits, for the fast claim.
    limited: crate::shared::LimitedQueues,
    /// Whether claims should look for keyed tasks.
    keyed: crate::shared::KeyedTasksHint,
}

fn err(e: sqlx::Error) -> StoreError {
    from_sqlx(e, sqlite_contention)
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and runs migrations.
    pub async fn open(options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(&options.database_url)
            .map_err(|e| StoreError::Internal(format!("bad sqlite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(options.acquire_timeout)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(err)?;
        if options.migrate {
            MIGRATOR
                .run(&writer)
                .await
                .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))?;
        }
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.read_only(true))
            .await
            .map_err(err)?;
        let (inserted, _) = watch::channel(0);
        Ok(SqliteStore {
            writer,
            reader,
            inserted,
            limited: Default::default(),
            keyed: Default::default(),
        })
    }

    /// Runs pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn request_log_insert_many(&self, entries: &[RequestLogEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await.map_err(err)?;
        for chunk in entries.chunks(REQUEST_ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::new(
                "INSERT INTO requests (node_id, method, path, status, message, created_at) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(&e.node_id)
                    .push_bind(&e.method)
                    .push_bind(&e.path)
                    .push_bind(i64::from(e.status))
                    .push_bind(&e.message)
                    .push_bind(millis(e.created_at));
            });
            q.build().execute(&mut *tx).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn request_log_stats(&self) -> Result<RequestLogStats, StoreError> {
        let rows = sqlx::query("SELECT node_id, COUNT(*) FROM requests GROUP BY node_id")
            .fetch_all(&self.reader)
            .await
            .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(NodeRequestCount {
                    node_id: r.try_get(0).map_err(err)?,
                    count: r.try_get(1).map_err(err)?,
                })
            })
            .collect()
    }

    async fn task_insert(&self, p: TaskInsertParams) -> Result<Task, StoreError> {
        self.insert_one(p).await
    }

    async fn task_insert_many(
        &self,
        params: &[TaskInsertParams],
    ) -> Result<Vec<TaskId>, StoreError> {
        if params.is_empty() {
            return Ok(Vec::new());
        }
        self.insert_many(params).await
    }

    async fn task_insert_idempotent(
        &self,
        p: TaskInsertParams,
        key: &str,
        window: std::time::Duration,
    ) -> Result<(Task, bool), StoreError> {
        self.idempotent_insert(p, key, window).await
    }

    async fn task_retry(&self, id: TaskId, now: DateTime<Utc>) -> Result<TaskChange, StoreError> {
        self.retry_dead(id, now).await
    }

    async fn task_cancel(&self, id: TaskId, now: DateTime<Utc>) -> Result<TaskChange, StoreError> {
        self.cancel_unfinished(id, now).await
    }

    async fn leader_acquire(&self, p: LeaderAcquireParams) -> Result<bool, StoreError> {
        self.acquire_leader(p).await
    }

    async fn maintenance_prune(
        &self,
        p: MaintenancePruneParams,
    ) -> Result<MaintenancePruneReport, StoreError> {
        self.prune(p).await
    }

    async fn task_list(&self, p: TaskListParams) -> Result<Vec<Task>, StoreError> {
        self.list_page(p).await
    }

    async fn task_counts(&self) -> Result<TaskCounts, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM tasks GROUP BY state")
                .fetch_all(&self.reader)
                .await
                .map_err(err)?;
        Ok(TaskCounts::from_rows(rows))
    }

    async fn task_finished_counts(
        &self,
        since: DateTime<Utc>,
    ) -> Result<FinishedCounts, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM tasks WHERE completed_at >= ? \
             AND state IN ('succeeded', 'dead') GROUP BY state",
        )
        .bind(rows::millis(since))
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        Ok(FinishedCounts::from_rows(rows))
    }

    async fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT queue, state, COUNT(*) FROM tasks WHERE state IN ('queued', 'running') \
             GROUP BY queue, state ORDER BY queue",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        Ok(crate::shared::depths_from_rows(rows))
    }

    async fn task_queued_by_type(&self) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT kind, COUNT(*) FROM tasks WHERE state = 'queued' GROUP BY kind ORDER BY kind",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(err)
    }

    async fn task_get(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(err)?;
        row.as_ref().map(task_from_row).transpose()
    }

    async fn task_claim(&self, p: TaskClaimParams) -> Result<Vec<ClaimedTask>, StoreError> {
        if p.max == 0 {
            return Ok(Vec::new());
        }
        self.claim(&p).await
    }

    async fn queue_configure(&self, q: &QueueLimits) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO queues (name, concurrency, rate_per_second, burst, tokens, refilled_at) \
             VALUES (?, ?, ?, ?, 0, NULL) \
             ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency, \
                 rate_per_second = excluded.rate_per_second, burst = excluded.burst",
        )
        .bind(&q.name)
        .bind(q.concurrency)
        .bind(q.rate_per_second)
        .bind(q.burst)
        .execute(&self.writer)
        .await
        .map_err(err)?;
        self.limited.invalidate();
        Ok(())
    }

    async fn queue_list(&self) -> Result<Vec<QueueLimits>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, concurrency, rate_per_second, burst FROM queues \
             WHERE concurrency IS NOT NULL OR rate_per_second IS NOT NULL ORDER BY name",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(QueueLimits {
                    name: r.try_get(0).map_err(err)?,
                    concurrency: r.try_get(1).map_err(err)?,
                    rate_per_second: r.try_get(2).map_err(err)?,
                    burst: r.try_get(3).map_err(err)?,
                })
            })
            .collect()
    }

    async fn task_complete_many(
        &self,
        completions: &[TaskCompletion],
    ) -> Result<Vec<CompletionOutcome>, StoreError> {
        let mut tx = self.writer.begin().await.map_err(err)?;
        let mut outcomes = Vec::with_capacity(completions.len());
        for c in completions {
            let now = millis(c.now);
            let id = c.id.to_string();
            let done = match &c.outcome {
                TaskOutcome::Succeeded { result, cache } => {
                    let result = result.to_string();
                    let done = sqlx::query(
                        "UPDATE tasks SET state = 'succeeded', result = ?, error = NULL, \
                             completed_at = ?, lease_expires_at = NULL \
                         WHERE id = ? AND lease_token = ? AND state = 'running'",
                    )
                    .bind(&result)
                    .bind(now)
                    .bind(&id)
                    .bind(c.lease_token)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected()
                        == 1;
                    if let (true, Some(cache)) = (done, cache) {
                        sqlx::query(
                            "INSERT INTO cache (key, value, created_at, expires_at) VALUES (?, ?, ?, ?) \
                             ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                                 created_at = excluded.created_at, expires_at = excluded.expires_at",
                        )
                        .bind(&cache.key)
                        .bind(&result)
                        .bind(now)
                        .bind(millis(cache.expires_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                    }
                    done
                }
                TaskOutcome::Failed { error, retry_at } => {
                    let (state, run_at, completed_at) = match retry_at {
                        Some(at) => ("queued", Some(millis(*at)), None),
                        None => ("dead", None, Some(now)),
                    };
                    sqlx::query(
                        "UPDATE tasks SET state = ?, error = ?, run_at = COALESCE(?, run_at), \
                             completed_at = ?, lease_expires_at = NULL, \
                             errors = json_insert(errors, '$[#]', json_object('attempt', attempts, \
                                 'error', ?, 'at', ?, 'worker_id', worker_id)) \
                         WHERE id = ? AND lease_token = ? AND state = 'running'",
                    )
                    .bind(state)
                    .bind(error)
                    .bind(run_at)
                    .bind(completed_at)
                    .bind(error)
                    .bind(c.now.to_rfc3339())
                    .bind(&id)
                    .bind(c.lease_token)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected()
                        == 1
                }
            };
            outcomes.push(if done {
                CompletionOutcome::Applied
            } else {
                CompletionOutcome::LeaseLost
            });
        }
        tx.commit().await.map_err(err)?;
        if completions.iter().any(|c| {
            matches!(
                c.outcome,
                TaskOutcome::Failed {
                    retry_at: Some(_),
                    ..
                }
            )
        }) {
            self.inserted.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(outcomes)
    }

    async fn task_lease_extend(&self, p: TaskLeaseExtendParams) -> Result<Vec<TaskId>, StoreError> {
        if p.tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::new("UPDATE tasks SET lease_expires_at = ");
        q.push_bind(millis(p.lease_expires_at))
            .push(" WHERE state = 'running' AND worker_id = ")
            .push_bind(&p.worker_id)
            .push(" AND (id, lease_token) IN (VALUES ");
        let mut sep = q.separated(", ");
        for (id, token) in &p.tasks {
            sep.push("(")
                .push_bind_unseparated(id.to_string())
                .push_unseparated(", ")
                .push_bind_unseparated(*token)
                .push_unseparated(")");
        }
        q.push(") RETURNING id");
        let mut tx = self.writer.begin().await.map_err(err)?;
        let ids: Vec<String> = q
            .build_query_scalar()
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
        for (id, progress) in &p.progress {
            sqlx::query("UPDATE tasks SET progress = ? WHERE id = ? AND state = 'running' AND worker_id = ?")
                .bind(i64::from(*progress))
                .bind(id.to_string())
                .bind(&p.worker_id)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        ids.iter()
            .map(|id| {
                id.parse()
                    .map_err(|e| StoreError::Corrupt(format!("task id: {e}")))
            })
            .collect()
    }

    async fn task_rescue_expired(&self, p: TaskRescueParams) -> Result<u64, StoreError> {
        let now = millis(p.now);
        let done = sqlx::query(
            "UPDATE tasks SET \
                 state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
                 error = ?3, \
                 completed_at = CASE WHEN attempts >= max_attempts THEN ?1 ELSE NULL END, \
                 lease_expires_at = NULL, \
                 errors = json_insert(errors, '$[#]', json_object('attempt', attempts, \
                     'error', ?3, 'at', ?2, 'worker_id', worker_id)) \
             WHERE state = 'running' AND lease_expires_at < ?1",
        )
        .bind(now)
        .bind(p.now.to_rfc3339())
        .bind(LEASE_EXPIRED)
        .execute(&self.writer)
        .await
        .map_err(err)?;
        if done.rows_affected() > 0 {
            self.inserted.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(done.rows_affected())
    }

    async fn task_release(&self, p: TaskReleaseParams) -> Result<u64, StoreError> {
        let mut released = 0;
        let mut tx = self.writer.begin().await.map_err(err)?;
        for (id, token) in &p.tasks {
            // The attempt did not fail: give it back so it does not count.
            released += sqlx::query(
                "UPDATE tasks SET state = 'queued', attempts = MAX(attempts - 1, 0), \
                     run_at = ?, lease_expires_at = NULL \
                 WHERE id = ? AND lease_token = ? AND state = 'running'",
            )
            .bind(millis(p.now))
            .bind(id.to_string())
            .bind(token)
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
        }
        tx.commit().await.map_err(err)?;
        if released > 0 {
            self.inserted.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(released)
    }

    async fn cache_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<Value>, StoreError> {
        let row = sqlx::query("SELECT value FROM cache WHERE key = ? AND expires_at > ?")
            .bind(key)
            .bind(millis(now))
            .fetch_optional(&self.reader)
            .await
            .map_err(err)?;
        row.map(|r| {
            let text: String = r.try_get(0).map_err(err)?;
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .transpose()
    }

    async fn cache_record_access(&self, p: &CacheAccessParams) -> Result<(), StoreError> {
        if p.hits.is_empty() && p.misses == 0 {
            return Ok(());
        }
        let mut tx = self.writer.begin().await.map_err(err)?;
        let mut hits = 0;
        for (key, n, at) in &p.hits {
            hits += n;
            sqlx::query(
                "UPDATE cache SET access_count = access_count + ?, \
                     last_accessed_at = MAX(COALESCE(last_accessed_at, 0), ?) WHERE key = ?",
            )
            .bind(n)
            .bind(millis(*at))
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        sqlx::query("UPDATE cache_counters SET hits = hits + ?, misses = misses + ? WHERE id = 1")
            .bind(hits)
            .bind(p.misses)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn cache_stats(&self, top: i64) -> Result<CacheStats, StoreError> {
        let (entries, hits, misses): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM cache), hits, misses FROM cache_counters WHERE id = 1",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(err)?;
        let rows: Vec<(String, i64, Option<i64>, i64, i64)> = sqlx::query_as(
            "SELECT key, access_count, last_accessed_at, created_at, expires_at FROM cache \
             ORDER BY access_count DESC, key LIMIT ?",
        )
        .bind(top)
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        let time = |ms: i64| {
            DateTime::from_timestamp_millis(ms)
                .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
        };
        let top = rows
            .into_iter()
            .map(|(key, access_count, last, created, expires)| {
                Ok(CacheEntryStats {
                    key,
                    access_count,
                    last_accessed_at: last.map(time).transpose()?,
                    created_at: time(created)?,
                    expires_at: time(expires)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(CacheStats {
            entries,
            hits,
            misses,
            top,
        })
    }

    async fn event_insert_many(&self, events: &[NewEvent]) -> Result<u64, StoreError> {
        events::insert_many(&self.writer, events).await
    }

    async fn event_list_latest(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        events::list_latest(&self.reader, limit).await
    }

    async fn event_count(&self) -> Result<i64, StoreError> {
        events::count(&self.reader).await
    }

    async fn worker_heartbeat(&self, p: WorkerHeartbeatParams) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workers (id, status, concurrency, active_tasks, current_task, processed, \
                 failed, started_at, last_heartbeat_at, task_types) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
                 task_types = excluded.task_types, \
                 concurrency = excluded.concurrency, active_tasks = excluded.active_tasks, \
                 current_task = excluded.current_task, processed = excluded.processed, \
                 failed = excluded.failed, started_at = excluded.started_at, \
                 last_heartbeat_at = excluded.last_heartbeat_at",
        )
        .bind(&p.worker_id)
        .bind(p.status.as_str())
        .bind(p.concurrency)
        .bind(p.active_tasks)
        .bind(&p.current_task)
        .bind(p.processed)
        .bind(p.failed)
        .bind(millis(p.started_at))
        .bind(millis(p.now))
        .bind(serde_json::Value::from(p.task_types.clone()).to_string())
        .execute(&self.writer)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn worker_list(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, status, concurrency, active_tasks, current_task, processed, failed, \
                 started_at, last_heartbeat_at, task_types FROM workers ORDER BY id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        rows.iter().map(worker_from_row).collect()
    }

    fn task_inserted(&self) -> watch::Receiver<u64> {
        self.inserted.subscribe()
    }
}
