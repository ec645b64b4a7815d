//! The shared backend: PostgreSQL, for many processes on many machines.
//!
//! The queue follows what the fastest PostgreSQL queues learned:
//! - claims take a batch with `FOR UPDATE SKIP LOCKED`, so concurrent workers
//!   never wait on each other's rows, and bump a per-task fencing token;
//! - completions are written in batches, one statement for the whole batch
//!   (arrays through `unnest`), each row fenced by its token;
//! - the hot table holds only queued and running tasks: a finished task moves
//!   to `tasks_finished` in the statement that records it;
//! - workers elsewhere are woken by a debounced NOTIFY ([`notify`]), with
//!   polling as the fallback.

mod batch;
mod claim;
mod insert;

use batch::{CompletionArrays, COMPLETE_MANY};
pub use claim::TASK_CLAIM_SQL;
mod events;
mod notify;
mod rows;
mod steering;

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;
use weir_core::{
    CacheAccessParams, CacheEntryStats, CacheStats, ClaimedTask, CompletionOutcome, FinishedCounts,
    LeaderAcquireParams, MaintenancePruneParams, MaintenancePruneReport, NewEvent,
    NodeRequestCount, QueueDepth, QueueLimits, RequestLogEntry, RequestLogStats, Store, StoreError,
    StoredEvent, Task, TaskChange, TaskClaimParams, TaskCompletion, TaskCounts, TaskId,
    TaskInsertParams, TaskLeaseExtendParams, TaskListParams, TaskReleaseParams, TaskRescueParams,
    WorkerHeartbeatParams, WorkerInfo,
};

use crate::error::{from_sqlx, postgres_contention};
use crate::StoreOptions;
use rows::{task_from_row, worker_from_row, FINISHED_TASK_COLUMNS, LIVE_TASK_COLUMNS};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: PgPool,
    inserted: watch::Sender<u64>,
    /// Pokes the NOTIFY producer after an insert.
    poke: Arc<Notify>,
    producer: JoinHandle<()>,
    /// Started on the first `task_inserted` call: only workers listen.
    listener: OnceLock<JoinHandle<()>>,
    /// Queues with limits, for the fast claim.
    limited: crate::shared::LimitedQueues,
    /// Whether claims should look for keyed tasks.
    keyed: crate::shared::KeyedTasksHint,
}

fn err(e: sqlx::Error) -> StoreError {
    from_sqlx(e, postgres_contention)
}

impl PostgresStore {
    /// Connects, and runs migrations unless told not to.
    pub async fn open(options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(&options.database_url)
            .map_err(|e| StoreError::Internal(format!("bad postgres URL: {e}")))?
            .application_name("weir");
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .min_connections(0)
            .acquire_timeout(options.acquire_timeout)
            // A connection the server dropped (restart, pg_terminate_backend)
            // is found and replaced instead of failing the next caller.
            .test_before_acquire(true)
            .connect_lazy_with(connect);
        if options.migrate {
            MIGRATOR
                .run(&pool)
                .await
                .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))?;
        } else {
            // Fail fast on a wrong URL rather than on the first request.
            sqlx::query("SELECT 1").execute(&pool).await.map_err(err)?;
        }
        let (inserted, _) = watch::channel(0);
        let poke = Arc::new(Notify::new());
        let producer = tokio::spawn(notify::run_producer(pool.clone(), poke.clone()));
        Ok(PostgresStore {
            pool,
            inserted,
            poke,
            producer,
            listener: OnceLock::new(),
            limited: Default::default(),
            keyed: Default::default(),
        })
    }

    /// The connection pool (tests and benchmarks inspect the database through it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn wake_workers(&self) {
        self.inserted.send_modify(|n| *n = n.wrapping_add(1));
        self.poke.notify_one();
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.producer.abort();
        if let Some(listener) = self.listener.get() {
            listener.abort();
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn request_log_insert_many(&self, entries: &[RequestLogEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut nodes = Vec::with_capacity(entries.len());
        let mut methods = Vec::with_capacity(entries.len());
        let mut paths = Vec::with_capacity(entries.len());
        let mut statuses = Vec::with_capacity(entries.len());
        let mut messages = Vec::with_capacity(entries.len());
        let mut times = Vec::with_capacity(entries.len());
        for e in entries {
            nodes.push(e.node_id.as_str());
            methods.push(e.method.as_str());
            paths.push(e.path.as_str());
            statuses.push(i32::from(e.status));
            messages.push(e.message.as_deref());
            times.push(e.created_at);
        }
        // One statement for the whole batch, whatever its size.
        sqlx::query(
            "INSERT INTO requests (node_id, method, path, status, message, created_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], \
                                  $6::timestamptz[])",
        )
        .bind(nodes)
        .bind(methods)
        .bind(paths)
        .bind(statuses)
        .bind(messages)
        .bind(times)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn request_log_stats(&self) -> Result<RequestLogStats, StoreError> {
        let rows = sqlx::query("SELECT node_id, COUNT(*) FROM requests GROUP BY node_id")
            .fetch_all(&self.pool)
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
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM tasks GROUP BY state \
             UNION ALL SELECT state, COUNT(*) FROM tasks_finished GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(TaskCounts::from_rows(rows))
    }

    async fn task_finished_counts(
        &self,
        since: DateTime<Utc>,
    ) -> Result<FinishedCounts, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM tasks_finished WHERE completed_at >= $1 GROUP BY state",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(FinishedCounts::from_rows(rows))
    }

    async fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT queue, state, COUNT(*) FROM tasks GROUP BY queue, state ORDER BY queue",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(crate::shared::depths_from_rows(rows))
    }

    async fn task_queued_by_type(&self) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT kind, COUNT(*) FROM tasks WHERE state = 'queued' GROUP BY kind ORDER BY kind",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)
    }

    async fn task_get(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        // A task is in exactly one table at a time; the finished side is read
        // first to not miss one that moves between the two reads.
        let sql = format!(
            "SELECT {FINISHED_TASK_COLUMNS} FROM tasks_finished WHERE id = $1 \
             UNION ALL SELECT {LIVE_TASK_COLUMNS} FROM tasks WHERE id = $1 LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
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
        // A new rate starts with a full bucket (`refilled_at` NULL).
        sqlx::query(
            "INSERT INTO queues (name, concurrency, rate_per_second, burst, tokens, refilled_at) \
             VALUES ($1, $2, $3, $4, 0, NULL) \
             ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency, \
                 rate_per_second = excluded.rate_per_second, burst = excluded.burst",
        )
        .bind(&q.name)
        .bind(q.concurrency)
        .bind(q.rate_per_second)
        .bind(q.burst)
        .execute(&self.pool)
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
        .fetch_all(&self.pool)
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
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let a = CompletionArrays::new(completions);
        let (cache_keys, (cache_ids, cache_expiry)): (
            Vec<String>,
            (Vec<Uuid>, Vec<DateTime<Utc>>),
        ) = a.cache.into_iter().unzip();
        let applied: Vec<Uuid> = sqlx::query_scalar(COMPLETE_MANY)
            .bind(&a.ids)
            .bind(&a.tokens)
            .bind(&a.states)
            .bind(&a.results)
            .bind(&a.errors)
            .bind(&a.run_ats)
            .bind(&a.nows)
            .bind(cache_keys)
            .bind(cache_ids)
            .bind(cache_expiry)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        let mut applied: std::collections::HashSet<Uuid> = applied.into_iter().collect();
        if a.states.contains(&"queued") {
            self.wake_workers();
        }
        Ok(a.ids
            .iter()
            .map(|id| {
                // A task listed twice in one batch is applied once: the first wins.
                if applied.remove(id) {
                    CompletionOutcome::Applied
                } else {
                    CompletionOutcome::LeaseLost
                }
            })
            .collect())
    }

    async fn task_lease_extend(&self, p: TaskLeaseExtendParams) -> Result<Vec<TaskId>, StoreError> {
        if p.tasks.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, tokens): (Vec<Uuid>, Vec<i64>) = p.tasks.iter().map(|(id, t)| (id.0, *t)).unzip();
        let held: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE tasks t SET lease_expires_at = $1 \
             FROM unnest($3::uuid[], $4::bigint[]) AS l(id, token) \
             WHERE t.id = l.id AND t.lease_token = l.token AND t.state = 'running' \
               AND t.worker_id = $2 \
             RETURNING t.id",
        )
        .bind(p.lease_expires_at)
        .bind(&p.worker_id)
        .bind(ids)
        .bind(tokens)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        if !p.progress.is_empty() {
            let (ids, progress): (Vec<Uuid>, Vec<i16>) =
                p.progress.iter().map(|(id, v)| (id.0, *v)).unzip();
            sqlx::query(
                "UPDATE tasks t SET progress = r.progress \
                 FROM unnest($1::uuid[], $2::smallint[]) AS r(id, progress) \
                 WHERE t.id = r.id AND t.state = 'running' AND t.worker_id = $3",
            )
            .bind(ids)
            .bind(progress)
            .bind(&p.worker_id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        }
        Ok(held.into_iter().map(TaskId).collect())
    }

    async fn task_rescue_expired(&self, p: TaskRescueParams) -> Result<u64, StoreError> {
        const LEASE_EXPIRED: &str =
            "lease expired: the worker running this attempt stopped responding";
        let done: (i64, i64) = sqlx::query_as(
            "WITH expired AS ( \
                 SELECT id FROM tasks WHERE state = 'running' AND lease_expires_at < $1 \
                 FOR UPDATE SKIP LOCKED), \
             dead AS ( \
                 DELETE FROM tasks t USING expired e \
                 WHERE t.id = e.id AND t.attempts >= t.max_attempts \
                 RETURNING t.id, t.kind, t.input, t.attempts, t.max_attempts, t.priority, \
                           t.worker_id, t.created_at, t.run_at, t.started_at, t.errors, \
                           t.queue, t.concurrency_key, t.backoff_base_ms, t.backoff_cap_ms, \
                           t.timeout_ms), \
             archived AS ( \
                 INSERT INTO tasks_finished (id, kind, input, state, result, error, attempts, \
                     max_attempts, priority, worker_id, created_at, run_at, started_at, completed_at, \
                     queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms, errors) \
                 SELECT id, kind, input, 'dead', NULL, $2, attempts, max_attempts, priority, \
                        worker_id, created_at, run_at, started_at, $1, queue, concurrency_key, \
                        backoff_base_ms, backoff_cap_ms, timeout_ms, \
                        errors || jsonb_build_array(jsonb_build_object('attempt', attempts, \
                            'error', $2::text, 'at', $1::timestamptz, 'worker_id', worker_id)) \
                 FROM dead \
                 RETURNING id), \
             requeued AS ( \
                 UPDATE tasks t SET state = 'queued', error = $2, lease_expires_at = NULL, \
                     errors = t.errors || jsonb_build_array(jsonb_build_object('attempt', t.attempts, \
                         'error', $2::text, 'at', $1::timestamptz, 'worker_id', t.worker_id)) \
                 FROM expired e WHERE t.id = e.id AND t.attempts < t.max_attempts \
                 RETURNING t.id) \
             SELECT (SELECT COUNT(*) FROM archived), (SELECT COUNT(*) FROM requeued)",
        )
        .bind(p.now)
        .bind(LEASE_EXPIRED)
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        if done.1 > 0 {
            self.wake_workers();
        }
        Ok((done.0 + done.1) as u64)
    }

    async fn task_release(&self, p: TaskReleaseParams) -> Result<u64, StoreError> {
        if p.tasks.is_empty() {
            return Ok(0);
        }
        let (ids, tokens): (Vec<Uuid>, Vec<i64>) = p.tasks.iter().map(|(id, t)| (id.0, *t)).unzip();
        // The attempt did not fail: give it back so it does not count.
        let done = sqlx::query(
            "UPDATE tasks t SET state = 'queued', attempts = GREATEST(t.attempts - 1, 0), \
                 run_at = $1, lease_expires_at = NULL \
             FROM unnest($2::uuid[], $3::bigint[]) AS r(id, token) \
             WHERE t.id = r.id AND t.lease_token = r.token AND t.state = 'running'",
        )
        .bind(p.now)
        .bind(ids)
        .bind(tokens)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        if done.rows_affected() > 0 {
            self.wake_workers();
        }
        Ok(done.rows_affected())
    }

    async fn cache_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<Value>, StoreError> {
        sqlx::query_scalar("SELECT value FROM cache WHERE key = $1 AND expires_at > $2")
            .bind(key)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)
    }

    async fn cache_record_access(&self, p: &CacheAccessParams) -> Result<(), StoreError> {
        if p.hits.is_empty() && p.misses == 0 {
            return Ok(());
        }
        let mut keys = Vec::with_capacity(p.hits.len());
        let mut counts = Vec::with_capacity(p.hits.len());
        let mut times = Vec::with_capacity(p.hits.len());
        for (key, n, at) in &p.hits {
            keys.push(key.as_str());
            counts.push(*n);
            times.push(*at);
        }
        let hits: i64 = counts.iter().sum();
        sqlx::query(
            "WITH accessed AS ( \
                 UPDATE cache c SET access_count = c.access_count + a.n, \
                     last_accessed_at = GREATEST(c.last_accessed_at, a.at) \
                 FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS a(key, n, at) \
                 WHERE c.key = a.key) \
             UPDATE cache_counters SET hits = hits + $4, misses = misses + $5 WHERE id = 1",
        )
        .bind(keys)
        .bind(counts)
        .bind(times)
        .bind(hits)
        .bind(p.misses)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn cache_stats(&self, top: i64) -> Result<CacheStats, StoreError> {
        let (entries, hits, misses): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM cache), hits, misses FROM cache_counters WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        let rows: Vec<(
            String,
            i64,
            Option<DateTime<Utc>>,
            DateTime<Utc>,
            DateTime<Utc>,
        )> = sqlx::query_as(
            "SELECT key, access_count, last_accessed_at, created_at, expires_at FROM cache \
                 ORDER BY access_count DESC, key LIMIT $1",
        )
        .bind(top)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(CacheStats {
            entries,
            hits,
            misses,
            top: rows
                .into_iter()
                .map(
                    |(key, access_count, last_accessed_at, created_at, expires_at)| {
                        CacheEntryStats {
                            key,
                            access_count,
                            last_accessed_at,
                            created_at,
                            expires_at,
                        }
                    },
                )
                .collect(),
        })
    }

    async fn event_insert_many(&self, events: &[NewEvent]) -> Result<u64, StoreError> {
        events::insert_many(&self.pool, events).await
    }

    async fn event_list_latest(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        events::list_latest(&self.pool, limit).await
    }

    async fn event_count(&self) -> Result<i64, StoreError> {
        events::count(&self.pool).await
    }

    async fn worker_heartbeat(&self, p: WorkerHeartbeatParams) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workers (id, status, concurrency, active_tasks, current_task, processed, \
                 failed, started_at, last_heartbeat_at, task_types) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
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
        .bind(p.started_at)
        .bind(p.now)
        .bind(serde_json::Value::from(p.task_types.clone()))
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn worker_list(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, status, concurrency, active_tasks, current_task, processed, failed, \
                 started_at, last_heartbeat_at, task_types FROM workers ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(worker_from_row).collect()
    }

    fn task_inserted(&self) -> watch::Receiver<u64> {
        self.listener.get_or_init(|| {
            tokio::spawn(notify::run_listener(
                self.pool.clone(),
                self.inserted.clone(),
            ))
        });
        self.inserted.subscribe()
    }
}
