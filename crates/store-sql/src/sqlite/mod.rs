//! The embedded dialect: one SQLite file in WAL mode.
//!
//! SQLite allows one writer at a time, so every write goes through a pool of
//! exactly one connection (writers queue in the pool instead of spinning on
//! `SQLITE_BUSY`), while reads use a separate pool of read-only connections that
//! WAL lets run beside the writer. `synchronous = FULL` (the default) syncs the
//! log at every commit, so whatever a commit acknowledges survives a power
//! loss; `NORMAL` (`--sqlite-synchronous normal`) survives a killed process
//! only. The single writer also makes every transaction's counts hold until
//! it commits, so no row or key needs locking.

mod admin;
mod events;
mod insert;
mod rows;
mod tx;
mod workflows;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, SqlitePool};
use weir_core::{
    AuditEntry, AuditListParams, BulkId, BulkJob, CacheAccessParams, CacheEntryStats,
    LeaderAcquireParams, NewBulk, NewEvent, NodeRequestCount, QueueLimits, RequestLogEntry,
    RequestLogStats, StoreError, StoredEvent, Task, TaskClaimParams, TaskCompletion, TaskFilter,
    TaskId, TaskInsertParams, TaskLeaseExtendParams, TaskListParams, TaskReleaseParams, TaskState,
    WorkerHeartbeatParams, WorkerInfo, Workflow, WorkflowId, WorkflowListParams,
};
use weir_store::{
    lease_end, BulkRow, Claimed, CompletedOutside, Driver, DriverTx, LiveByQueue, StandingTask,
    Wakeups,
};

use crate::error::{from_sqlx, sqlite_cause};
use crate::migrations;
use crate::StoreOptions;
use rows::{decode, millis, time, ClaimedRow, WorkerRow, TASK_COLUMNS};

/// SQLite allows at most 32766 bound parameters per statement; request-log
/// inserts are chunked well below that.
const REQUEST_ROWS_PER_STATEMENT: usize = 1_000;

/// The SQLite driver.
pub struct SqliteDriver {
    writer: SqlitePool,
    reader: SqlitePool,
}

/// Set when any statement failed in the database: the writer connection
/// may be left mid-transaction where sqlx believes it is not, or the other
/// way round (SQLite rolls a transaction back by itself on some errors, a
/// full disk among them, and a COMMIT that fails leaves it open). Such a
/// connection would acknowledge later writes it never commits, so the writer
/// pool replaces its connection when it is next released (an SQLite open is
/// about a millisecond; errors are rare). Process-wide: a spurious
/// replacement costs only the reopen.
static WRITER_SUSPECT: AtomicBool = AtomicBool::new(false);

fn err(e: sqlx::Error) -> StoreError {
    if matches!(e, sqlx::Error::Database(_)) {
        WRITER_SUSPECT.store(true, Ordering::Release);
    }
    from_sqlx(e, sqlite_cause)
}

impl SqliteDriver {
    /// Opens (creating if missing) the database file and, when asked, runs
    /// migrations.
    pub async fn open(options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(&options.database_url)
            .map_err(|e| StoreError::Internal(format!("bad sqlite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.sqlite_synchronous {
                crate::SqliteSynchronous::Full => SqliteSynchronous::Full,
                crate::SqliteSynchronous::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(options.acquire_timeout)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .after_release(|_conn, _meta| {
                Box::pin(async {
                    let suspect = WRITER_SUSPECT.swap(false, Ordering::AcqRel);
                    if suspect {
                        tracing::info!(
                            "sqlite: a statement failed; the writer connection is reopened"
                        );
                    }
                    Ok(!suspect)
                })
            })
            .connect_with(connect.clone())
            .await
            .map_err(err)?;
        if options.migrate {
            let ran = match migrations::migrator(migrations::SQLITE).await {
                Ok(migrator) => migrator.run(&writer).await,
                Err(e) => Err(e),
            };
            ran.map_err(|e| StoreError::Internal(format!("migration failed: {e}")))?;
        }
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.read_only(true))
            .await
            .map_err(err)?;
        Ok(SqliteDriver { writer, reader })
    }
}

/// JSON text of a name list, for `json_each` (`None`: no filter).
fn json_list(names: Option<&[String]>) -> Option<String> {
    names.map(|n| serde_json::Value::from(n.to_vec()).to_string())
}

#[async_trait]
impl Driver for SqliteDriver {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn begin(&self) -> Result<Box<dyn DriverTx>, StoreError> {
        // IMMEDIATE: take the write lock up front, so another process's
        // writer cannot slip in between a transaction's counts and its claims.
        let tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(err)?;
        Ok(Box::new(tx::SqliteTx { tx }))
    }

    /// One process owns an SQLite file's workers: nobody else to tell.
    fn wake_other_processes(&self, _keyed: bool) {}

    fn listen_for_wakeups(&self, _wakeups: Wakeups) {}

    async fn limited_queue_names(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT name FROM queues WHERE limited")
            .fetch_all(&self.reader)
            .await
            .map_err(err)
    }

    async fn keyed_tasks_due(&self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE concurrency_key IS NOT NULL \
                            AND state = 'queued' AND run_at <= ?)",
        )
        .bind(millis(now))
        .fetch_one(&self.reader)
        .await
        .map_err(err)
    }

    async fn task_complete_outside_workflows(
        &self,
        _completions: &[TaskCompletion],
    ) -> Result<Option<CompletedOutside>, StoreError> {
        // The database is in this process: a transaction costs no round
        // trips, so every completion takes the transaction's path.
        Ok(None)
    }

    async fn claim_unlimited(
        &self,
        p: &TaskClaimParams,
        _limited: &[String],
    ) -> Result<Vec<Claimed>, StoreError> {
        let sql = include_str!("sql/claim_unlimited.sql").replace(
            "{filter}",
            &crate::filter::fast_claim_filter(p.queues.as_deref(), p.types.as_deref()),
        );
        let rows: Vec<ClaimedRow> = sqlx::query_as(&sql)
            .bind(&p.worker_id)
            .bind(millis(p.now))
            .bind(millis(lease_end(p.now, p.lease)))
            .bind(i64::from(p.max))
            .fetch_all(&self.writer)
            .await
            .map_err(err)?;
        decode(rows)
    }

    async fn task_insert_rows(
        &self,
        params: &[&TaskInsertParams],
        from_cache: bool,
    ) -> Result<Vec<TaskId>, StoreError> {
        insert::insert_rows(&self.writer, params, from_cache).await
    }

    async fn task_standing_for(
        &self,
        params: &[&TaskInsertParams],
    ) -> Result<Vec<StandingTask>, StoreError> {
        insert::standing_for(&self.writer, params).await
    }

    async fn task_lease_extend(
        &self,
        p: &TaskLeaseExtendParams,
    ) -> Result<Vec<TaskId>, StoreError> {
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
            sqlx::query(
                "UPDATE tasks SET progress = ? WHERE id = ? AND state = 'running' AND worker_id = ?",
            )
            .bind(i64::from(*progress))
            .bind(id.to_string())
            .bind(&p.worker_id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        ids.iter().map(|id| rows::task_id(id)).collect()
    }

    async fn task_release(&self, p: &TaskReleaseParams) -> Result<u64, StoreError> {
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
        Ok(released)
    }

    async fn workflow_status_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as("SELECT status, COUNT(*) FROM workflows GROUP BY status")
            .fetch_all(&self.reader)
            .await
            .map_err(err)
    }

    async fn steps_of_tasks(
        &self,
        tasks: &[TaskId],
    ) -> Result<Vec<(TaskId, WorkflowId, String)>, StoreError> {
        workflows::steps_of_tasks(&self.reader, tasks).await
    }

    async fn workflow_summary(&self, id: WorkflowId) -> Result<Option<Workflow>, StoreError> {
        workflows::summary(&self.reader, id).await
    }

    async fn workflow_get(&self, id: WorkflowId) -> Result<Option<Workflow>, StoreError> {
        workflows::get(&self.reader, id).await
    }

    async fn workflow_list(
        &self,
        params: &WorkflowListParams,
    ) -> Result<Vec<Workflow>, StoreError> {
        workflows::list(&self.reader, params).await
    }

    async fn task_get(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        // Its workflow step, if it is one, in the same statement.
        let sql = format!(
            "SELECT {TASK_COLUMNS}, s.workflow_id AS step_workflow_id, s.step_id AS step_name \
             FROM tasks LEFT JOIN workflow_steps s ON s.task_id = tasks.id WHERE tasks.id = ?"
        );
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(err)?;
        row.as_ref().map(rows::task_with_step).transpose()
    }

    async fn task_list(&self, p: &TaskListParams) -> Result<Vec<Task>, StoreError> {
        admin::task_list(&self.reader, p).await
    }

    async fn task_ids_matching(
        &self,
        filter: &TaskFilter,
        states: &[TaskState],
        among: Option<&[TaskId]>,
        before: TaskId,
        limit: i64,
    ) -> Result<Vec<TaskId>, StoreError> {
        admin::task_ids_matching(&self.reader, filter, states, among, before, limit).await
    }

    async fn bulk_insert(&self, bulk: &NewBulk, cursor: TaskId) -> Result<(), StoreError> {
        admin::bulk_insert(&self.writer, bulk, cursor).await
    }

    async fn bulk_get(&self, id: BulkId) -> Result<Option<BulkJob>, StoreError> {
        admin::bulk_get(&self.reader, id).await
    }

    async fn bulk_list(&self, limit: i64) -> Result<Vec<BulkJob>, StoreError> {
        admin::bulk_list(&self.reader, limit).await
    }

    async fn bulk_take(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<BulkRow>, StoreError> {
        admin::bulk_take(&self.writer, holder, now, until).await
    }

    async fn audit_insert(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        admin::audit_insert(&self.writer, entry).await
    }

    async fn audit_list(&self, params: &AuditListParams) -> Result<Vec<AuditEntry>, StoreError> {
        admin::audit_list(&self.reader, params).await
    }

    async fn task_state_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as("SELECT state, COUNT(*) FROM tasks GROUP BY state")
            .fetch_all(&self.reader)
            .await
            .map_err(err)
    }

    async fn task_finished_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT state, COUNT(*) FROM tasks WHERE completed_at >= ? \
             AND state IN ('succeeded', 'dead') GROUP BY state",
        )
        .bind(millis(since))
        .fetch_all(&self.reader)
        .await
        .map_err(err)
    }

    async fn task_succeeded_by_queue(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT queue, COUNT(*) FROM tasks WHERE completed_at >= ? AND state = 'succeeded' \
             GROUP BY queue ORDER BY queue",
        )
        .bind(millis(since))
        .fetch_all(&self.reader)
        .await
        .map_err(err)
    }

    async fn task_live_by_queue(&self) -> Result<Vec<LiveByQueue>, StoreError> {
        let rows: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT queue, state, COUNT(*), MIN(run_at) FROM tasks \
             WHERE state IN ('queued', 'running') GROUP BY queue, state ORDER BY queue",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|(queue, state, count, oldest)| {
                Ok(LiveByQueue {
                    queue,
                    state,
                    count,
                    oldest_run_at: oldest.map(time).transpose()?,
                })
            })
            .collect()
    }

    async fn task_queued_by_type(&self) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT kind, COUNT(*) FROM tasks WHERE state = 'queued' GROUP BY kind ORDER BY kind",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(err)
    }

    async fn queue_save_paused(&self, name: &str, paused: bool) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO queues (name, paused) VALUES (?, ?) \
             ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
        )
        .bind(name)
        .bind(paused)
        .execute(&self.writer)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn queue_save_limits(&self, q: &QueueLimits) -> Result<(), StoreError> {
        // A new rate starts with a full bucket (`refilled_at` NULL).
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
        Ok(())
    }

    async fn queue_list(&self) -> Result<Vec<QueueLimits>, StoreError> {
        let rows: Vec<(String, Option<i32>, Option<f64>, Option<i32>, bool)> = sqlx::query_as(
            "SELECT name, concurrency, rate_per_second, burst, paused FROM queues \
             WHERE limited ORDER BY name",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(
                |(name, concurrency, rate_per_second, burst, paused)| QueueLimits {
                    name,
                    concurrency,
                    rate_per_second,
                    burst,
                    paused,
                },
            )
            .collect())
    }

    async fn leader_take(
        &self,
        p: &LeaderAcquireParams,
        until: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(
            "INSERT INTO leaders (name, holder, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leaders.holder = excluded.holder OR leaders.expires_at < ?4 \
             RETURNING holder",
        )
        .bind(&p.name)
        .bind(&p.holder)
        .bind(millis(until))
        .bind(millis(p.now))
        .fetch_optional(&self.writer)
        .await
        .map_err(err)
    }

    async fn prune_finished_tasks(
        &self,
        state: weir_core::TaskState,
        before: DateTime<Utc>,
        _now: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        // A workflow's steps stay while it does (its cleaner pass frees them).
        let sql = format!(
            "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks \
             WHERE state = '{}' AND completed_at < ? \
               AND NOT EXISTS (SELECT 1 FROM workflow_steps s WHERE s.task_id = tasks.id) \
             LIMIT ?)",
            state.as_str()
        );
        self.delete_some(&sql, millis(before), limit).await
    }

    async fn prune_idempotency_keys(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        // Task keys, then event batches' keys: the same rule for both.
        let mut deleted = 0;
        for table in ["idempotency_keys", "event_keys"] {
            let sql = format!(
                "DELETE FROM {table} WHERE key IN (SELECT key FROM {table} \
                 WHERE created_at < ? LIMIT ?)"
            );
            deleted += self.delete_some(&sql, millis(before), limit).await?;
        }
        Ok(deleted)
    }

    async fn prune_workflows(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        workflows::prune(&self.writer, millis(before), limit).await
    }

    async fn prune_audit(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        self.delete_some(
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < ? LIMIT ?)",
            millis(before),
            limit,
        )
        .await
    }

    async fn prune_cache(&self, now: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        self.delete_some(
            "DELETE FROM cache WHERE key IN (SELECT key FROM cache WHERE expires_at <= ? LIMIT ?)",
            millis(now),
            limit,
        )
        .await
    }

    async fn workers_mark_offline(&self, since: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE workers SET status = 'offline', active_tasks = 0, current_task = NULL \
             WHERE status <> 'offline' AND last_heartbeat_at < ?",
        )
        .bind(millis(since))
        .execute(&self.writer)
        .await
        .map_err(err)?
        .rows_affected())
    }

    async fn cache_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<Value>, StoreError> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT value FROM cache WHERE key = ? AND expires_at > ?")
                .bind(key)
                .bind(millis(now))
                .fetch_optional(&self.reader)
                .await
                .map_err(err)?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    async fn cache_entries(
        &self,
        keys: &[&str],
    ) -> Result<Vec<(String, Value, DateTime<Utc>)>, StoreError> {
        // Through the writer: the insert that skipped these just committed there.
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT key, value, expires_at FROM cache WHERE key IN (SELECT value FROM json_each(?))",
        )
        .bind(serde_json::to_string(keys).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .fetch_all(&self.writer)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|(key, value, expires_at)| {
                let value = serde_json::from_str(&value)
                    .map_err(|e| StoreError::Corrupt(format!("cache value: {e}")))?;
                Ok((key, value, time(expires_at)?))
            })
            .collect()
    }

    async fn cache_record_access(&self, p: &CacheAccessParams) -> Result<(), StoreError> {
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

    async fn cache_counters(&self) -> Result<(i64, i64, i64), StoreError> {
        sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM cache), hits, misses FROM cache_counters WHERE id = 1",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(err)
    }

    async fn cache_top(&self, n: i64) -> Result<Vec<CacheEntryStats>, StoreError> {
        let rows: Vec<(String, i64, Option<i64>, i64, i64)> = sqlx::query_as(
            "SELECT key, access_count, last_accessed_at, created_at, expires_at FROM cache \
             ORDER BY access_count DESC, key LIMIT ?",
        )
        .bind(n)
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|(key, access_count, last, created, expires)| {
                Ok(CacheEntryStats {
                    key,
                    access_count,
                    last_accessed_at: last.map(time).transpose()?,
                    created_at: time(created)?,
                    expires_at: time(expires)?,
                })
            })
            .collect()
    }

    async fn request_log_insert_many(&self, entries: &[RequestLogEntry]) -> Result<(), StoreError> {
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
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT node_id, COUNT(*) FROM requests GROUP BY node_id")
                .fetch_all(&self.reader)
                .await
                .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(node_id, count)| NodeRequestCount { node_id, count })
            .collect())
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

    async fn event_key_take(
        &self,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        // The no-op update makes RETURNING give the row that holds the key.
        sqlx::query_scalar(
            "INSERT INTO event_keys (key, fingerprint, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (key) DO UPDATE SET key = excluded.key RETURNING fingerprint",
        )
        .bind(key)
        .bind(fingerprint)
        .bind(millis(now))
        .fetch_one(&self.writer)
        .await
        .map_err(err)
    }

    async fn worker_upsert(&self, p: &WorkerHeartbeatParams) -> Result<(), StoreError> {
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
        let rows: Vec<WorkerRow> = sqlx::query_as(
            "SELECT id, status, concurrency, active_tasks, current_task, processed, failed, \
                 started_at, last_heartbeat_at, task_types FROM workers ORDER BY id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        decode(rows)
    }
}

impl SqliteDriver {
    /// Runs a bounded `DELETE … LIMIT ?` (binding a time, then the limit).
    async fn delete_some(&self, sql: &str, at: i64, limit: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql)
            .bind(at)
            .bind(limit)
            .execute(&self.writer)
            .await
            .map_err(err)?
            .rows_affected())
    }
}
