//! The shared dialect: PostgreSQL, for many processes on many machines.
//!
//! The queue follows what the fastest PostgreSQL queues learned:
//! - claims take a batch with `FOR UPDATE SKIP LOCKED`, so concurrent workers
//!   never wait on each other's rows, and bump a per-task fencing token;
//! - completions are written in batches, one statement for the whole batch
//!   (arrays through `unnest`), each row fenced by its token;
//! - the hot table holds only queued and running tasks: a finished task moves
//!   to `tasks_finished` in the statement that records it;
//! - limited queues are locked `FOR UPDATE SKIP LOCKED` and concurrency keys
//!   with `pg_try_advisory_xact_lock` (released at commit; safe behind a
//!   transaction pooler), so claimers take turns and never wait;
//! - workers elsewhere are woken by a debounced NOTIFY ([`notify`]), with
//!   polling as the fallback.

mod admin;
mod batch;
mod claim_hint;
mod durability;
mod events;
pub mod exec;
mod insert;
mod notify;
mod partitions;
mod rows;
mod tx;
mod workflows;

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use exec::PgExec;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use uuid::Uuid;
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

use crate::error::{from_sqlx, postgres_cause};
use crate::migrations;
use crate::StoreOptions;
use claim_hint::{ClaimHints, ClaimKey};
use rows::{decode, ClaimedRow, WorkerRow, FINISHED_TASK_COLUMNS, LIVE_TASK_COLUMNS};

/// The fast claim; `{filter}` is the inlined filter.
const TASK_CLAIM_SQL: &str = include_str!("sql/claim_unlimited.sql");

/// The fast claim of a worker of every queue and type (public so a test can
/// check its plan walks the claim index).
pub fn task_claim_sql_for_any_task() -> String {
    TASK_CLAIM_SQL.replace("{filter}", &crate::filter::fast_claim_filter(None, None))
}

/// The PostgreSQL driver.
pub struct PostgresDriver {
    /// The pool, and whether a transaction pooler stands in front of it.
    exec: PgExec,
    /// Pokes the NOTIFY producer after tasks became due.
    poke: Arc<notify::Poke>,
    producer: JoinHandle<()>,
    /// Started on the first subscription: only workers listen.
    listener: OnceLock<JoinHandle<()>>,
    /// Where each claim filter's next index walk may start.
    hints: Arc<ClaimHints>,
    /// Where LISTEN connects when it may not go through `exec` (a
    /// transaction pooler keeps no session state).
    listen_url: Option<String>,
}

fn err(e: sqlx::Error) -> StoreError {
    from_sqlx(e, postgres_cause)
}

impl PostgresDriver {
    /// One claim statement walking `tasks_claim` from `from` (None: from the
    /// front), taking at most `max`; leaves a hint for the next walk.
    async fn claim_walk(
        &self,
        p: &TaskClaimParams,
        filter: &str,
        hint_key: &str,
        from: Option<ClaimKey>,
        max: u32,
    ) -> Result<Vec<ClaimedRow>, StoreError> {
        let sql = match from {
            Some(_) => TASK_CLAIM_SQL.replace(
                "{filter}",
                &format!("{filter} AND priority = $5 AND (run_at, id) > ($6, $7)"),
            ),
            None => TASK_CLAIM_SQL.replace("{filter}", filter),
        };
        let mut query = sqlx::query_as(&sql)
            .bind(&p.worker_id)
            .bind(p.now)
            .bind(lease_end(p.now, p.lease))
            .bind(i64::from(max));
        if let Some(k) = from {
            query = query.bind(k.priority).bind(k.run_at).bind(k.id);
        }
        let started = std::time::Instant::now();
        let rows: Vec<ClaimedRow> = query.fetch_all(&self.exec).await.map_err(err)?;
        let last = claim_hint::latest(rows.iter().map(ClaimedRow::claim_key));
        let full = rows.len() >= max as usize;
        self.hints
            .record(hint_key, from, last, full, started.elapsed());
        Ok(rows)
    }

    /// Connects, and runs migrations unless told not to.
    pub async fn open(options: &StoreOptions) -> Result<Self, StoreError> {
        let mut connect = PgConnectOptions::from_str(&options.database_url)
            .map_err(|e| StoreError::Internal(format!("bad postgres URL: {e}")))?
            .application_name("weir");
        let mut transaction_pooler = options.transaction_pooler;
        if !transaction_pooler && behind_transaction_pooler(&connect).await? {
            // Named statements would collide there ("prepared statement
            // sqlx_s_1 already exists", a 500 for every caller).
            tracing::warn!(
                "the database URL leads through a transaction pooler (two connections \
                 answered from one server session): running as with --transaction-pooler"
            );
            transaction_pooler = true;
        }
        if transaction_pooler {
            // No statement outlives its transaction (see `exec`).
            connect = connect.statement_cache_capacity(0);
        }
        let mut pool = PgPoolOptions::new();
        if !transaction_pooler {
            // weir's statements are short: JIT compiling one costs more than
            // running it, and a batch over the day partitions of finished
            // tasks is estimated dear enough to trigger it (~100 ms each).
            // (Behind a transaction pooler a session setting would not hold.)
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(conn, "SET jit = off").await?;
                    Ok(())
                })
            });
        }
        let pool = pool
            .max_connections(options.max_connections.max(2))
            .min_connections(0)
            .acquire_timeout(options.acquire_timeout)
            // A connection the server dropped (restart, pg_terminate_backend)
            // is found and replaced instead of failing the next caller.
            .test_before_acquire(true)
            .connect_lazy_with(connect);
        let exec = PgExec {
            pool,
            pooled: transaction_pooler,
        };
        if options.migrate {
            migrate(&exec).await?;
            // Today's partitions for finished tasks before the first one
            // finishes (the maintenance leader keeps them made from then on).
            if let Err(e) = partitions::make_all(&exec, Utc::now()).await {
                tracing::warn!("making today's partitions for finished tasks: {e}");
            }
        } else {
            // Fail fast on a wrong URL rather than on the first request.
            sqlx::query("SELECT 1").execute(&exec).await.map_err(err)?;
        }
        durability::warn_if_commits_may_be_lost(&exec).await;
        let poke = Arc::new(notify::Poke::default());
        let producer = tokio::spawn(notify::run_producer(exec.clone(), poke.clone()));
        Ok(PostgresDriver {
            exec,
            listen_url: options.listen_database_url.clone(),
            poke,
            producer,
            listener: OnceLock::new(),
            hints: Arc::default(),
        })
    }

    /// Whether statements run as behind a transaction pooler (the flag, or
    /// one found at start).
    pub fn through_transaction_pooler(&self) -> bool {
        self.exec.pooled
    }

    /// The connection pool (tests and benchmarks inspect the database through it).
    pub fn pool(&self) -> &PgPool {
        &self.exec.pool
    }

    /// Runs a bounded delete binding a time, then the limit.
    async fn delete_some(
        &self,
        sql: &str,
        at: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql)
            .bind(at)
            .bind(limit)
            .execute(&self.exec)
            .await
            .map_err(err)?
            .rows_affected())
    }
}

/// Whether `connect` leads through a transaction (or statement) pooler such
/// as pgbouncer's transaction mode: two client connections held at once
/// answer from one server session (a pooler hands the session it just got
/// back to the next transaction), where PostgreSQL itself gives each
/// connection its own. Unnamed statements only, so the probe itself is safe
/// there.
async fn behind_transaction_pooler(connect: &PgConnectOptions) -> Result<bool, StoreError> {
    use sqlx::{Connection, Row};
    let probe = connect.clone().statement_cache_capacity(0);
    let mut first = sqlx::PgConnection::connect_with(&probe)
        .await
        .map_err(err)?;
    let mut second = sqlx::PgConnection::connect_with(&probe)
        .await
        .map_err(err)?;
    let mut pids = Vec::with_capacity(2);
    for conn in [&mut first, &mut second] {
        let row = sqlx::query("SELECT pg_backend_pid()")
            .persistent(false)
            .fetch_one(&mut *conn)
            .await
            .map_err(err)?;
        pids.push(row.try_get::<i32, _>(0).map_err(err)?);
    }
    let _ = first.close().await;
    let _ = second.close().await;
    Ok(pids[0] == pids[1])
}

/// Brings the schema up to date — unless it already is: then no DDL runs, so
/// a role with data rights alone (API nodes and workers under least
/// privilege) starts, and so does a connection through a transaction pooler
/// (the migrator's session lock would not hold there).
async fn migrate(exec: &PgExec) -> Result<(), StoreError> {
    if schema_current(exec).await? {
        return Ok(());
    }
    if exec.pooled {
        // The migrator holds a session lock: a pooler would not keep it.
        return Err(StoreError::Internal(
            "the schema is not current: run `weir migrate` against PostgreSQL directly \
             (not through the transaction pooler), then start again"
                .into(),
        ));
    }
    let ran = match migrations::migrator(migrations::POSTGRES).await {
        Ok(migrator) => migrator.run(&exec.pool).await,
        Err(e) => Err(e),
    };
    ran.map_err(|e| {
        let denied = matches!(&e, sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(d))
            if d.code().as_deref() == Some("42501"))
            || e.to_string().contains("permission denied");
        StoreError::Internal(if denied {
            format!(
                "the schema is not current and this role may not change it ({e}): \
                 run `weir migrate` as the schema's owner, then start again"
            )
        } else {
            format!("migration failed: {e}")
        })
    })
}

/// Whether every migration this binary carries is applied, with the same
/// checksum.
async fn schema_current(pool: &PgExec) -> Result<bool, StoreError> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(pool)
        .await
        .map_err(err)?;
    if table.is_none() {
        return Ok(false);
    }
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
            .map_err(err)?;
    let migrator = migrations::migrator(migrations::POSTGRES)
        .await
        .map_err(|e| StoreError::Internal(format!("migrations: {e}")))?;
    Ok(migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .all(|m| {
            applied
                .iter()
                .any(|(v, c)| *v == m.version && *c == *m.checksum)
        }))
}

impl Drop for PostgresDriver {
    fn drop(&mut self) {
        self.producer.abort();
        if let Some(listener) = self.listener.get() {
            listener.abort();
        }
    }
}

#[async_trait]
impl Driver for PostgresDriver {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.exec)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn begin(&self) -> Result<Box<dyn DriverTx>, StoreError> {
        let tx = self.exec.pool.begin().await.map_err(err)?;
        Ok(Box::new(tx::PostgresTx {
            tx,
            named: !self.exec.pooled,
            hints: self.hints.clone(),
        }))
    }

    fn wake_other_processes(&self, keyed: bool) {
        self.poke.poke(keyed);
    }

    fn listen_for_wakeups(&self, wakeups: Wakeups) {
        self.listener.get_or_init(|| {
            let connect = match (&self.listen_url, self.exec.pooled) {
                (Some(url), _) => match PgConnectOptions::from_str(url) {
                    Ok(o) => notify::ListenOn::Direct(Box::new(o)),
                    Err(e) => {
                        tracing::warn!(error = %e, "bad --listen-database-url; polling instead");
                        notify::ListenOn::Nowhere
                    }
                },
                // LISTEN is session state: not through a transaction pooler.
                (None, true) => notify::ListenOn::Nowhere,
                (None, false) => notify::ListenOn::Pool(self.exec.pool.clone()),
            };
            let own = self.poke.sender().to_string();
            tokio::spawn(notify::run_listener(connect, wakeups, own))
        });
    }

    async fn limited_queue_names(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT name FROM queues WHERE limited")
            .fetch_all(&self.exec)
            .await
            .map_err(err)
    }

    async fn keyed_tasks_due(&self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        // Cheap: keyed tasks are indexed.
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE concurrency_key IS NOT NULL \
                            AND state = 'queued' AND run_at <= $1)",
        )
        .bind(now)
        .fetch_one(&self.exec)
        .await
        .map_err(err)
    }

    async fn claim_unlimited(
        &self,
        p: &TaskClaimParams,
        limited: &[String],
    ) -> Result<Vec<Claimed>, StoreError> {
        let filter = crate::filter::fast_claim_filter(p.queues.as_deref(), p.types.as_deref());
        // A walk's hint is kept per set of limited queues as well: rows a
        // limit made it skip sit before the hint once the limit is lifted.
        let hint_key = format!("{filter} -- {}", limited.join(","));
        let from = self.hints.start_for(&hint_key);
        let mut rows = self.claim_walk(p, &filter, &hint_key, from, p.max).await?;
        if from.is_some() && rows.len() < p.max as usize {
            // The hint's priority ran out: the rest may sit anywhere.
            let rest = p.max - rows.len() as u32;
            rows.extend(self.claim_walk(p, &filter, &hint_key, None, rest).await?);
        }
        decode(rows)
    }

    async fn task_complete_outside_workflows(
        &self,
        completions: &[TaskCompletion],
    ) -> Result<Option<CompletedOutside>, StoreError> {
        if self.exec.pooled {
            // Behind a transaction pooler each statement is wrapped in its
            // own transaction anyway: nothing to save, and a batch with
            // steps would take two.
            return Ok(None);
        }
        let done = batch::complete_many(&self.exec, &self.hints, completions, false).await?;
        Ok(Some(done))
    }

    async fn task_insert_rows(
        &self,
        params: &[&TaskInsertParams],
        from_cache: bool,
    ) -> Result<Vec<TaskId>, StoreError> {
        let ids = insert::insert_rows(&self.exec, params, from_cache).await?;
        for p in params {
            self.hints.task_queued_at(&ClaimKey::of(p));
        }
        Ok(ids)
    }

    async fn task_standing_for(
        &self,
        params: &[&TaskInsertParams],
    ) -> Result<Vec<StandingTask>, StoreError> {
        insert::standing_for(&self.exec, params).await
    }

    async fn task_lease_extend(
        &self,
        p: &TaskLeaseExtendParams,
    ) -> Result<Vec<TaskId>, StoreError> {
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
        .fetch_all(&self.exec)
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
            .execute(&self.exec)
            .await
            .map_err(err)?;
        }
        Ok(held.into_iter().map(TaskId).collect())
    }

    async fn task_release(&self, p: &TaskReleaseParams) -> Result<u64, StoreError> {
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
        .execute(&self.exec)
        .await
        .map_err(err)?;
        self.hints.forget_all();
        Ok(done.rows_affected())
    }

    async fn workflow_status_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as("SELECT status, COUNT(*) FROM workflows GROUP BY status")
            .fetch_all(&self.exec)
            .await
            .map_err(err)
    }

    async fn steps_of_tasks(
        &self,
        tasks: &[TaskId],
    ) -> Result<Vec<(TaskId, WorkflowId, String)>, StoreError> {
        workflows::steps_of_tasks(&self.exec, tasks).await
    }

    async fn workflow_summary(&self, id: WorkflowId) -> Result<Option<Workflow>, StoreError> {
        workflows::summary(&self.exec, id).await
    }

    async fn workflow_get(&self, id: WorkflowId) -> Result<Option<Workflow>, StoreError> {
        workflows::get(&self.exec, id).await
    }

    async fn workflow_list(
        &self,
        params: &WorkflowListParams,
    ) -> Result<Vec<Workflow>, StoreError> {
        workflows::list(&self.exec, params).await
    }

    async fn task_get(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        // A task is in exactly one table at a time; the finished side is read
        // first to not miss one that moves between the two reads. Its
        // workflow step, if it is one, comes in the same round trip.
        let sql = format!(
            "SELECT t.*, s.workflow_id AS step_workflow_id, s.step_id AS step_name FROM \
             (SELECT {FINISHED_TASK_COLUMNS} FROM tasks_finished WHERE id = $1 \
              UNION ALL SELECT {LIVE_TASK_COLUMNS} FROM tasks WHERE id = $1 LIMIT 1) t \
             LEFT JOIN workflow_steps s ON s.task_id = t.id"
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.exec)
            .await
            .map_err(err)?;
        row.as_ref().map(rows::task_with_step).transpose()
    }

    async fn task_list(&self, p: &TaskListParams) -> Result<Vec<Task>, StoreError> {
        admin::task_list(&self.exec, p).await
    }

    async fn task_ids_matching(
        &self,
        filter: &TaskFilter,
        states: &[TaskState],
        among: Option<&[TaskId]>,
        before: TaskId,
        limit: i64,
    ) -> Result<Vec<TaskId>, StoreError> {
        admin::task_ids_matching(&self.exec, filter, states, among, before, limit).await
    }

    async fn bulk_insert(&self, bulk: &NewBulk, cursor: TaskId) -> Result<(), StoreError> {
        admin::bulk_insert(&self.exec, bulk, cursor).await
    }

    async fn bulk_get(&self, id: BulkId) -> Result<Option<BulkJob>, StoreError> {
        admin::bulk_get(&self.exec, id).await
    }

    async fn bulk_list(&self, limit: i64) -> Result<Vec<BulkJob>, StoreError> {
        admin::bulk_list(&self.exec, limit).await
    }

    async fn bulk_take(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<BulkRow>, StoreError> {
        admin::bulk_take(&self.exec, holder, now, until).await
    }

    async fn audit_insert(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        admin::audit_insert(&self.exec, entry).await
    }

    async fn audit_list(&self, params: &AuditListParams) -> Result<Vec<AuditEntry>, StoreError> {
        admin::audit_list(&self.exec, params).await
    }

    async fn task_state_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT state, COUNT(*) FROM tasks GROUP BY state \
             UNION ALL SELECT state, COUNT(*) FROM tasks_finished GROUP BY state",
        )
        .fetch_all(&self.exec)
        .await
        .map_err(err)
    }

    async fn task_finished_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT state, COUNT(*) FROM tasks_finished WHERE completed_at >= $1 \
             AND state IN ('succeeded', 'dead') GROUP BY state",
        )
        .bind(since)
        .fetch_all(&self.exec)
        .await
        .map_err(err)
    }

    async fn task_succeeded_by_queue(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT queue, COUNT(*) FROM tasks_finished \
             WHERE completed_at >= $1 AND state = 'succeeded' GROUP BY queue ORDER BY queue",
        )
        .bind(since)
        .fetch_all(&self.exec)
        .await
        .map_err(err)
    }

    async fn task_live_by_queue(&self) -> Result<Vec<LiveByQueue>, StoreError> {
        let rows: Vec<(String, String, i64, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT queue, state, COUNT(*), MIN(run_at) FROM tasks \
             WHERE state IN ('queued', 'running') GROUP BY queue, state ORDER BY queue",
        )
        .fetch_all(&self.exec)
        .await
        .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(queue, state, count, oldest_run_at)| LiveByQueue {
                queue,
                state,
                count,
                oldest_run_at,
            })
            .collect())
    }

    async fn task_queued_by_type(&self) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT kind, COUNT(*) FROM tasks WHERE state = 'queued' GROUP BY kind ORDER BY kind",
        )
        .fetch_all(&self.exec)
        .await
        .map_err(err)
    }

    async fn queue_save_paused(&self, name: &str, paused: bool) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO queues (name, paused) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
        )
        .bind(name)
        .bind(paused)
        .execute(&self.exec)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn queue_save_limits(&self, q: &QueueLimits) -> Result<(), StoreError> {
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
        .execute(&self.exec)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn queue_list(&self) -> Result<Vec<QueueLimits>, StoreError> {
        let rows: Vec<(String, Option<i32>, Option<f64>, Option<i32>, bool)> = sqlx::query_as(
            "SELECT name, concurrency, rate_per_second, burst, paused FROM queues \
             WHERE limited ORDER BY name",
        )
        .fetch_all(&self.exec)
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
            "INSERT INTO leaders (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leaders.holder = excluded.holder OR leaders.expires_at < $4 \
             RETURNING holder",
        )
        .bind(&p.name)
        .bind(&p.holder)
        .bind(until)
        .bind(p.now)
        .fetch_optional(&self.exec)
        .await
        .map_err(err)
    }

    async fn prune_finished_tasks(
        &self,
        state: weir_core::TaskState,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        partitions::prune(&self.exec, state, before, now, limit).await
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
                 WHERE created_at < $1 LIMIT $2)"
            );
            deleted += self.delete_some(&sql, before, limit).await?;
        }
        Ok(deleted)
    }

    async fn prune_workflows(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        let deleted: i64 = sqlx::query_scalar(include_str!("sql/prune_workflows.sql"))
            .bind(before)
            .bind(limit)
            .fetch_one(&self.exec)
            .await
            .map_err(err)?;
        Ok(deleted as u64)
    }

    async fn prune_audit(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        self.delete_some(
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 LIMIT $2)",
            before,
            limit,
        )
        .await
    }

    async fn prune_cache(&self, now: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        self.delete_some(
            "DELETE FROM cache WHERE key IN (SELECT key FROM cache WHERE expires_at <= $1 LIMIT $2)",
            now,
            limit,
        )
        .await
    }

    async fn workers_mark_offline(&self, since: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE workers SET status = 'offline', active_tasks = 0, current_task = NULL \
             WHERE status <> 'offline' AND last_heartbeat_at < $1",
        )
        .bind(since)
        .execute(&self.exec)
        .await
        .map_err(err)?
        .rows_affected())
    }

    async fn cache_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<Value>, StoreError> {
        sqlx::query_scalar("SELECT value FROM cache WHERE key = $1 AND expires_at > $2")
            .bind(key)
            .bind(now)
            .fetch_optional(&self.exec)
            .await
            .map_err(err)
    }

    async fn cache_entries(
        &self,
        keys: &[&str],
    ) -> Result<Vec<(String, Value, DateTime<Utc>)>, StoreError> {
        sqlx::query_as("SELECT key, value, expires_at FROM cache WHERE key = ANY($1)")
            .bind(keys)
            .fetch_all(&self.exec)
            .await
            .map_err(err)
    }

    async fn cache_record_access(&self, p: &CacheAccessParams) -> Result<(), StoreError> {
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
        .execute(&self.exec)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn cache_counters(&self) -> Result<(i64, i64, i64), StoreError> {
        sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM cache), hits, misses FROM cache_counters WHERE id = 1",
        )
        .fetch_one(&self.exec)
        .await
        .map_err(err)
    }

    async fn cache_top(&self, n: i64) -> Result<Vec<CacheEntryStats>, StoreError> {
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
        .bind(n)
        .fetch_all(&self.exec)
        .await
        .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(
                |(key, access_count, last_accessed_at, created_at, expires_at)| CacheEntryStats {
                    key,
                    access_count,
                    last_accessed_at,
                    created_at,
                    expires_at,
                },
            )
            .collect())
    }

    async fn request_log_insert_many(&self, entries: &[RequestLogEntry]) -> Result<(), StoreError> {
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
        .execute(&self.exec)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn request_log_stats(&self) -> Result<RequestLogStats, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT node_id, COUNT(*) FROM requests GROUP BY node_id")
                .fetch_all(&self.exec)
                .await
                .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(node_id, count)| NodeRequestCount { node_id, count })
            .collect())
    }

    async fn event_insert_many(&self, events: &[NewEvent]) -> Result<u64, StoreError> {
        events::insert_many(&self.exec, events).await
    }

    async fn event_list_latest(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        events::list_latest(&self.exec, limit).await
    }

    async fn event_count(&self) -> Result<i64, StoreError> {
        events::count(&self.exec).await
    }

    async fn event_key_take(
        &self,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        // The no-op update makes RETURNING give the row that holds the key
        // (and waits on a concurrent taker's commit).
        sqlx::query_scalar(
            "INSERT INTO event_keys (key, fingerprint, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET key = excluded.key RETURNING fingerprint",
        )
        .bind(key)
        .bind(fingerprint)
        .bind(now)
        .fetch_one(&self.exec)
        .await
        .map_err(err)
    }

    async fn worker_upsert(&self, p: &WorkerHeartbeatParams) -> Result<(), StoreError> {
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
        .execute(&self.exec)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn task_types_save(
        &self,
        types: &[weir_core::TaskTypeDefaults],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let column = |f: fn(&weir_core::TaskTypeDefaults) -> Option<String>| {
            types.iter().map(f).collect::<Vec<_>>()
        };
        sqlx::query(
            "INSERT INTO task_types (name, queue, priority, max_attempts, timeout_ms, \
                 sealed_fields, updated_at) \
             SELECT name, queue, priority, max_attempts, timeout_ms, sealed_fields, $7 \
             FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::bigint[], $6::jsonb[]) \
                 AS t(name, queue, priority, max_attempts, timeout_ms, sealed_fields) \
             ON CONFLICT (name) DO UPDATE SET queue = excluded.queue, \
                 priority = excluded.priority, max_attempts = excluded.max_attempts, \
                 timeout_ms = excluded.timeout_ms, sealed_fields = excluded.sealed_fields, \
                 updated_at = excluded.updated_at",
        )
        .bind(column(|t| Some(t.name.clone())))
        .bind(column(|t| t.queue.clone()))
        .bind(types.iter().map(|t| t.priority).collect::<Vec<_>>())
        .bind(types.iter().map(|t| t.max_attempts).collect::<Vec<_>>())
        .bind(
            types
                .iter()
                .map(|t| t.timeout.as_millis() as i64)
                .collect::<Vec<_>>(),
        )
        .bind(
            types
                .iter()
                .map(|t| serde_json::Value::from(t.sealed_fields.clone()))
                .collect::<Vec<_>>(),
        )
        .bind(now)
        .execute(&self.exec)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn worker_list(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        let rows: Vec<WorkerRow> = sqlx::query_as(
            "SELECT id, status, concurrency, active_tasks, current_task, processed, failed, \
                 started_at, last_heartbeat_at, task_types FROM workers ORDER BY id",
        )
        .fetch_all(&self.exec)
        .await
        .map_err(err)?;
        decode(rows)
    }
}
