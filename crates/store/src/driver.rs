//! The narrow interface one SQL dialect implements.
//!
//! Each operation is one intent — one statement, or a few in one transaction —
//! with no policy: which tasks to claim under which limits, how a folded
//! submission is resolved, when workers are woken, and how long to ride out a
//! busy database are decided once, in [`crate::SqlStore`]. A new database is a
//! new `Driver`; the conformance suites (store-level and driver-level) say
//! whether it is right.
//!
//! Operations that touch several rows under limits run inside a [`DriverTx`],
//! a transaction the policy drives step by step. Dialects with a faster single
//! statement for a hot path (PostgreSQL's claim, complete-many, and the move
//! of finished tasks to `tasks_finished`) keep it as one operation here.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::watch;
use weir_core::{
    AuditEntry, AuditListParams, BulkId, BulkJob, CacheAccessParams, CacheEntryStats, ClaimedTask,
    LeaderAcquireParams, NewBulk, NewEvent, QueueLimits, RequestLogEntry, RequestLogStats,
    StoreError, StoredEvent, Task, TaskClaimParams, TaskCompletion, TaskFilter, TaskId,
    TaskInsertParams, TaskLeaseExtendParams, TaskListParams, TaskReleaseParams, TaskState,
    WorkerHeartbeatParams, WorkerInfo, Workflow, WorkflowId, WorkflowListParams,
};

use crate::workflow_tx::WorkflowTx;

/// A claimed task with what orders it among the others claimed at once.
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    pub priority: i32,
    pub task: ClaimedTask,
}

/// A queue with limits, as a claim reads it (with its token bucket).
#[derive(Clone, Debug, PartialEq)]
pub struct LimitedQueue {
    pub name: String,
    /// Paused: none of its tasks is claimed.
    pub paused: bool,
    pub concurrency: Option<i32>,
    pub rate_per_second: Option<f64>,
    pub burst: Option<i32>,
    pub tokens: f64,
    pub refilled_at: Option<DateTime<Utc>>,
}

/// Live tasks of one queue in one state.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveByQueue {
    pub queue: String,
    pub state: String,
    pub count: i64,
    /// The earliest `run_at` among them.
    pub oldest_run_at: Option<DateTime<Utc>>,
}

/// What a rescue pass did to expired leases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rescued {
    /// Out of attempts: now dead.
    pub dead: Vec<TaskId>,
    /// Queued again.
    pub requeued: u64,
}

/// An idempotency key already held: the task it names, and the fingerprint
/// of the request that took it (`None` for keys taken before fingerprints).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldKey {
    pub task: TaskId,
    pub fingerprint: Option<String>,
}

/// Where wake-ups land: `inserted` moves on every one (workers wait on it);
/// `keyed` only on those that may have made a task with a concurrency key
/// due, so claims look for keyed tasks only then (see `KeyedTasksHint`).
#[derive(Clone)]
pub struct Wakeups {
    pub inserted: watch::Sender<u64>,
    pub keyed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups {
            inserted: watch::channel(0).0,
            keyed: Default::default(),
        }
    }
}

impl Wakeups {
    /// Tasks may have become due (`keyed`: some with a concurrency key).
    pub fn woken(&self, keyed: bool) {
        if keyed {
            self.keyed
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        self.inserted.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn keyed_count(&self) -> u64 {
        self.keyed.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A completion the store applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedCompletion {
    pub id: TaskId,
    /// The state it ended in (`None`: queued again for a retry).
    pub ended: Option<TaskState>,
    /// `false` only when the task is known to be no workflow's step: its
    /// end then needs no workflow bookkeeping (no further statements).
    pub maybe_step: bool,
    /// A limit counted it (it had a concurrency key, or its queue has
    /// limits): its end may let a task the limit held back be claimed.
    pub limited: bool,
}

/// What [`Driver::task_complete_outside_workflows`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompletedOutside {
    pub applied: Vec<AppliedCompletion>,
    /// Steps whose end it left undone (their leases held), for
    /// [`DriverTx::task_complete_many`] with their workflows' bookkeeping.
    pub steps_left: Vec<TaskId>,
}

/// A stored task that may stand for a submission not inserted: the same id,
/// or (when live) the same cache key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandingTask {
    pub id: TaskId,
    pub cache_key: Option<String>,
}

/// An unfinished bulk action as its holder took it.
#[derive(Clone, Debug, PartialEq)]
pub struct BulkRow {
    pub job: BulkJob,
    /// The ids it was given, newest first (`None`: it covers its filter).
    pub ids: Option<Vec<TaskId>>,
    /// Every task at or above this id has been looked at.
    pub cursor: TaskId,
}

/// What one batch of a bulk action did.
#[derive(Clone, Debug, PartialEq)]
pub struct BulkProgress {
    /// The batch's last (oldest) id looked at.
    pub cursor: TaskId,
    pub processed: i64,
    pub changed: i64,
    pub skipped: i64,
    /// Nothing is left after this batch.
    pub done: bool,
    pub now: DateTime<Utc>,
}

/// One transaction, driven step by step by the claim, submission and
/// workflow policies. Dropped without [`DriverTx::commit`], it rolls back.
///
/// Every way a task ends runs here, so that what its end does to a
/// workflow's graph ([`WorkflowTx`]) commits with it.
#[async_trait]
pub trait DriverTx: WorkflowTx + Send {
    /// The queues with limits among `only` (every one when `None`), by name,
    /// each locked for this transaction where the dialect can (a queue another
    /// claimer holds is skipped this round, never waited on).
    async fn limited_queues_lock(
        &mut self,
        only: Option<&[String]>,
    ) -> Result<Vec<LimitedQueue>, StoreError>;
    /// Running tasks of a queue.
    async fn running_in_queue(&mut self, queue: &str) -> Result<i64, StoreError>;
    /// Stores a queue's token bucket after a claim spent from it.
    async fn bucket_save(
        &mut self,
        queue: &str,
        tokens: f64,
        refilled_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Up to `limit` concurrency keys with due tasks the claimer may take: of
    /// `queue`, or (`None`) of the claimer's queues that have no limits.
    async fn due_keys(
        &mut self,
        claim: &TaskClaimParams,
        queue: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError>;
    /// Takes a key for this transaction; false when another claimer holds it.
    async fn key_try_lock(&mut self, key: &str) -> Result<bool, StoreError>;
    /// Running tasks with a concurrency key.
    async fn running_with_key(&mut self, key: &str) -> Result<i64, StoreError>;
    /// Claims up to `limit` due tasks of `queue` (or of the claimer's
    /// unlimited queues) with `key` (or without any key).
    async fn claim_filtered(
        &mut self,
        claim: &TaskClaimParams,
        queue: Option<&str>,
        key: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// Frees `key` when it is older than `oldest` or its task is gone, then
    /// takes it for `task`, with the request's `fingerprint`. `Some`: the
    /// key is held, for the task and fingerprint it names.
    async fn idempotency_key_take(
        &mut self,
        key: &str,
        fingerprint: Option<&str>,
        task: TaskId,
        now: DateTime<Utc>,
        oldest: DateTime<Utc>,
    ) -> Result<Option<HeldKey>, StoreError>;
    /// Points a held key at another task.
    async fn idempotency_key_point(&mut self, key: &str, task: TaskId) -> Result<(), StoreError>;
    /// Inserts one task; `None` when it conflicts (its id, or its cache key
    /// among live tasks).
    async fn task_insert_returning(
        &mut self,
        params: &TaskInsertParams,
    ) -> Result<Option<Task>, StoreError>;
    /// The task with this id (live or finished), else the live task with
    /// this cache key.
    async fn task_standing_for(
        &mut self,
        id: TaskId,
        cache_key: Option<&str>,
    ) -> Result<Option<Task>, StoreError>;

    /// Applies each completion fenced by its lease token (a finished task
    /// leaves the hot set; a success with a cache write fills the cache);
    /// returns the completions applied.
    async fn task_complete_many(
        &mut self,
        completions: &[TaskCompletion],
    ) -> Result<Vec<AppliedCompletion>, StoreError>;
    /// Requeues (or kills, when out of attempts) running tasks whose lease
    /// ended before `now`, recording `error` as the attempt's.
    async fn task_rescue_expired(
        &mut self,
        now: DateTime<Utc>,
        error: &str,
    ) -> Result<Rescued, StoreError>;
    /// A dead task queued again with fresh attempts; `None` when not dead.
    async fn task_retry_dead(
        &mut self,
        id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError>;
    /// A waiting, queued or running task cancelled (its lease token fenced
    /// off); `None` when not live.
    async fn task_cancel_live(
        &mut self,
        id: TaskId,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError>;

    /// Deletes those of `ids` that are finished and not a stored
    /// workflow's step; how many.
    async fn tasks_delete_finished(&mut self, ids: &[TaskId]) -> Result<u64, StoreError>;
    /// Records a bulk action's batch, fenced by its holder: false when
    /// another holder has taken it over (the batch must roll back).
    async fn bulk_advance(
        &mut self,
        id: BulkId,
        holder: &str,
        progress: &BulkProgress,
    ) -> Result<bool, StoreError>;

    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// One SQL dialect's operations.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// The backend's name, e.g. `sqlite`.
    fn name(&self) -> &'static str;
    /// A round trip to the database: what readiness probes ask.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Starts a transaction holding the write side (on SQLite, the write lock).
    async fn begin(&self) -> Result<Box<dyn DriverTx>, StoreError>;
    /// Tells other processes that tasks became due (PostgreSQL: a debounced
    /// NOTIFY; `keyed`: some may have a concurrency key). This process's own
    /// workers are woken by the store.
    fn wake_other_processes(&self, keyed: bool);
    /// Starts reporting to `wakeups` when another process signals due tasks
    /// (once; later calls do nothing).
    fn listen_for_wakeups(&self, wakeups: Wakeups);

    /// Names of queues with limits.
    async fn limited_queue_names(&self) -> Result<Vec<String>, StoreError>;
    /// Whether any due queued task has a concurrency key.
    async fn keyed_tasks_due(&self, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// The fast claim: due tasks without a key, in the claimer's queues and
    /// types, outside the queues limited (or paused) when the statement
    /// runs, in one statement. `limited` is the claimer's last view of
    /// those (a dialect may key its own state by it), never the filter.
    async fn claim_unlimited(
        &self,
        claim: &TaskClaimParams,
        limited: &[String],
    ) -> Result<Vec<Claimed>, StoreError>;

    /// Applies completions without a transaction of the caller's, where
    /// that saves the dialect round trips (PostgreSQL: one statement instead
    /// of BEGIN, statement, COMMIT) — all but a step's end, which is left
    /// for [`DriverTx::task_complete_many`] with its workflow's bookkeeping
    /// (a step's retry needs none: applied). `None`: the dialect applies
    /// none this way; every completion goes through the transaction.
    async fn task_complete_outside_workflows(
        &self,
        completions: &[TaskCompletion],
    ) -> Result<Option<CompletedOutside>, StoreError>;

    /// Inserts what it can (an id already stored, live or finished, or a
    /// cache key among live tasks skips a row; with `from_cache`, so does a
    /// cache key the result cache holds unexpired); returns the ids inserted.
    async fn task_insert_rows(
        &self,
        params: &[&TaskInsertParams],
        from_cache: bool,
    ) -> Result<Vec<TaskId>, StoreError>;
    /// The tasks with these ids (live or finished), and the live tasks with
    /// these cache keys.
    async fn task_standing_for(
        &self,
        params: &[&TaskInsertParams],
    ) -> Result<Vec<StandingTask>, StoreError>;
    /// Extends leases the worker still holds; returns those ids.
    async fn task_lease_extend(
        &self,
        params: &TaskLeaseExtendParams,
    ) -> Result<Vec<TaskId>, StoreError>;
    /// Queues running tasks again, giving their attempt back.
    async fn task_release(&self, params: &TaskReleaseParams) -> Result<u64, StoreError>;
    /// A task, live or finished, with its workflow and step id when it is
    /// a workflow's step (one round trip: `GET /tasks/{id}` is polled).
    async fn task_get(&self, id: TaskId) -> Result<Option<Task>, StoreError>;
    /// A page of tasks matching `params.filter`, in its order.
    async fn task_list(&self, params: &TaskListParams) -> Result<Vec<Task>, StoreError>;
    /// Up to `limit` ids below `before`, newest first, of tasks `filter`
    /// matches in one of `states` (and among `among`, when given).
    async fn task_ids_matching(
        &self,
        filter: &TaskFilter,
        states: &[TaskState],
        among: Option<&[TaskId]>,
        before: TaskId,
        limit: i64,
    ) -> Result<Vec<TaskId>, StoreError>;

    /// Stores a new bulk action, unfinished, looking first below `cursor`.
    async fn bulk_insert(&self, bulk: &NewBulk, cursor: TaskId) -> Result<(), StoreError>;
    async fn bulk_get(&self, id: BulkId) -> Result<Option<BulkJob>, StoreError>;
    /// The newest `limit` bulk actions.
    async fn bulk_list(&self, limit: i64) -> Result<Vec<BulkJob>, StoreError>;
    /// The oldest unfinished bulk action that `holder` holds or no one
    /// holds (a lease ended before `now` is no one's), now held by `holder`
    /// until `until`.
    async fn bulk_take(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<BulkRow>, StoreError>;

    async fn audit_insert(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    async fn audit_list(&self, params: &AuditListParams) -> Result<Vec<AuditEntry>, StoreError>;
    /// A workflow with its steps, in the order they were submitted.
    async fn workflow_get(&self, id: WorkflowId) -> Result<Option<Workflow>, StoreError>;
    /// A workflow without its steps.
    async fn workflow_summary(&self, id: WorkflowId) -> Result<Option<Workflow>, StoreError>;
    /// The workflow and step id of each of these tasks that is a step.
    async fn steps_of_tasks(
        &self,
        tasks: &[TaskId],
    ) -> Result<Vec<(TaskId, WorkflowId, String)>, StoreError>;
    /// (status, count) over every workflow.
    async fn workflow_status_counts(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// Workflows matching the filters, newest first, without their steps.
    async fn workflow_list(&self, params: &WorkflowListParams)
        -> Result<Vec<Workflow>, StoreError>;
    /// (state, count) over every task.
    async fn task_state_counts(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// (state, count) of tasks that succeeded or died at or after `since`.
    async fn task_finished_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// (queue, state, count) of live tasks, ordered by queue.
    async fn task_live_by_queue(&self) -> Result<Vec<LiveByQueue>, StoreError>;
    /// (queue, count) of tasks that succeeded at or after `since`.
    async fn task_succeeded_by_queue(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// (type, count) of queued tasks, ordered by type.
    async fn task_queued_by_type(&self) -> Result<Vec<(String, i64)>, StoreError>;

    /// Pauses or resumes a queue (its row made if missing).
    async fn queue_save_paused(&self, name: &str, paused: bool) -> Result<(), StoreError>;
    async fn queue_save_limits(&self, limits: &QueueLimits) -> Result<(), StoreError>;
    async fn queue_list(&self) -> Result<Vec<QueueLimits>, StoreError>;

    /// Takes the lease when free or expired at `params.now`, renews it when
    /// `params.holder` holds it; returns the holder afterwards, if it changed hands or was renewed.
    async fn leader_take(
        &self,
        params: &LeaderAcquireParams,
        until: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError>;
    /// Deletes up to `limit` tasks that ended in `state` before `before`,
    /// but not the steps of a workflow still stored (they go once it is
    /// pruned); returns how many went. A dialect that keeps finished tasks
    /// in time partitions drops the expired ones whole (a day's, kept until
    /// its last task's retention ends) and makes those ahead of `now`.
    async fn prune_finished_tasks(
        &self,
        state: TaskState,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError>;
    /// Deletes up to `limit` idempotency keys taken before `before`.
    async fn prune_idempotency_keys(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError>;
    /// Deletes up to `limit` workflows finished before `before`, with their
    /// steps and edges (their tasks go by their own age).
    async fn prune_workflows(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError>;
    /// Deletes up to `limit` audit-log entries recorded before `before`.
    async fn prune_audit(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError>;
    /// Deletes up to `limit` cache entries expired at `now`.
    async fn prune_cache(&self, now: DateTime<Utc>, limit: i64) -> Result<u64, StoreError>;
    /// Marks workers silent since `since` offline.
    async fn workers_mark_offline(&self, since: DateTime<Utc>) -> Result<u64, StoreError>;

    async fn cache_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<Value>, StoreError>;
    /// The entries of these keys, expired or not: (key, value, expiry).
    async fn cache_entries(
        &self,
        keys: &[&str],
    ) -> Result<Vec<(String, Value, DateTime<Utc>)>, StoreError>;
    async fn cache_record_access(&self, params: &CacheAccessParams) -> Result<(), StoreError>;
    /// (entries, hits, misses).
    async fn cache_counters(&self) -> Result<(i64, i64, i64), StoreError>;
    /// The `n` most read entries.
    async fn cache_top(&self, n: i64) -> Result<Vec<CacheEntryStats>, StoreError>;

    async fn request_log_insert_many(&self, entries: &[RequestLogEntry]) -> Result<(), StoreError>;
    async fn request_log_stats(&self) -> Result<RequestLogStats, StoreError>;

    /// Stores events, skipping ids already stored; returns how many were new.
    async fn event_insert_many(&self, events: &[NewEvent]) -> Result<u64, StoreError>;
    async fn event_list_latest(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError>;
    async fn event_count(&self) -> Result<i64, StoreError>;
    /// Takes `key` for an event batch with `fingerprint`, unless taken;
    /// returns the fingerprint the key holds now.
    async fn event_key_take(
        &self,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError>;

    async fn worker_upsert(&self, params: &WorkerHeartbeatParams) -> Result<(), StoreError>;
    async fn worker_list(&self) -> Result<Vec<WorkerInfo>, StoreError>;
    /// Upserts each type's defaults. A dialect without SQL enqueue (SQLite:
    /// one process owns the file) keeps none.
    async fn task_types_save(
        &self,
        _types: &[weir_core::TaskTypeDefaults],
        _now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}
