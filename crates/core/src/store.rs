//! The one interface every storage backend implements.
//!
//! Methods are named noun_verb and take a params struct where they take more than
//! an id, so adding a field does not break every backend. Time is passed in
//! (`now`) rather than read inside, so lease and expiry behaviour is testable
//! without sleeping.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use thiserror::Error;
use tokio::sync::watch;

use crate::{
    AuditEntry, AuditListParams, BulkId, BulkJob, CacheWrite, ClaimedTask, NewBulk, NewEvent,
    ParentFailure, RequestLogEntry, RequestLogStats, StoredEvent, Task, TaskId, TaskListParams,
    TaskState, TaskType, WorkerInfo, WorkerStatus, Workflow, WorkflowId, WorkflowListParams,
    WorkflowStatus,
};

/// What went wrong in the store. Backends map their driver's errors onto these.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The database is unreachable, refused a connection, or every pooled
    /// connection stayed busy past the wait bound. Worth retrying later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The stored data could not be read back (a bug or a hand-edited row).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The disk under the database is full: nothing of the call was
    /// written. Worth retrying once space is freed, not within a request.
    #[error("the database's disk is full: {0}")]
    DiskFull(String),
    /// An idempotency key came again with a different request: what it
    /// names (a task, an event batch) stands for the first one, not for this.
    #[error("the idempotency key was used for a different request ({0})")]
    IdempotencyKeyReused(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Whether the same call may succeed if tried again later (background
    /// services wait and retry; a request gives up).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::DiskFull(_))
    }

    /// Whether the same call may succeed within a request's budget: the
    /// database is busy or briefly away. A full disk does not clear so soon.
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// An idempotency key, with a fingerprint of the request it came with (a
/// later request under the key must have the same one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    /// `None`: not compared (a caller that has no request to fingerprint).
    pub fingerprint: Option<String>,
}

impl From<&str> for IdempotencyKey {
    fn from(key: &str) -> Self {
        IdempotencyKey {
            key: key.to_string(),
            fingerprint: None,
        }
    }
}

/// A new task.
#[derive(Clone, Debug)]
pub struct TaskInsertParams {
    pub id: TaskId,
    pub kind: TaskType,
    pub input: Value,
    pub max_attempts: i32,
    pub priority: i32,
    /// Set for cacheable kinds: where the result is cached on success.
    pub cache_key: Option<String>,
    pub run_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// The named queue (`default` unless given).
    pub queue: String,
    /// At most the claimer's `key_limit` tasks with the same key run at once.
    pub concurrency_key: Option<String>,
    /// This task's own backoff between attempts (else the worker's for its kind).
    pub backoff: Option<crate::RetryPolicy>,
    /// This task's own per-attempt time limit (else its type's).
    pub timeout: Option<Duration>,
    /// The submitting key's tenant, if it has one.
    pub tenant: Option<String>,
    /// The W3C trace context its attempts continue (`weir_trace`'s stored
    /// form: `traceparent`, then `tracestate` on a second line).
    pub trace: Option<String>,
}

/// What a submission became (see [`TaskQueue::task_submit_many`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Queued {
    /// The task that stands for it: its own (inserted now, or a resend of its
    /// id), or the live task computing the same input.
    Task(TaskId),
    /// The result cache held its answer: nothing was queued.
    Cached(Value),
}

/// One step as it is stored: its task, and its place in the graph.
#[derive(Clone, Debug)]
pub struct NewStep {
    pub step_id: String,
    pub task: TaskInsertParams,
    pub depends_on: Vec<String>,
    pub on_parent_failure: ParentFailure,
    pub with_parent_results: bool,
}

impl NewStep {
    /// The state its task is stored in: queued without parents, else
    /// waiting until they have ended.
    pub fn initial_state(&self) -> TaskState {
        if self.depends_on.is_empty() {
            TaskState::Queued
        } else {
            TaskState::Waiting
        }
    }
}

/// A workflow to store, its steps checked ([`crate::check_graph`]) and in an
/// order where every parent comes before its children.
#[derive(Clone, Debug)]
pub struct NewWorkflow {
    pub id: WorkflowId,
    pub name: Option<String>,
    pub tenant: Option<String>,
    pub now: DateTime<Utc>,
    pub steps: Vec<NewStep>,
}

/// Steps a running step adds to its own workflow, fenced by its lease.
#[derive(Clone, Debug)]
pub struct NewSteps {
    /// The running step adding them.
    pub adder: TaskId,
    /// The adder's current lease token.
    pub lease_token: i64,
    pub now: DateTime<Utc>,
    /// Checked as a graph among themselves ([`crate::check_graph`]),
    /// parents first; each depends only on steps of this list.
    pub steps: Vec<NewStep>,
    /// Most steps the workflow may hold with these.
    pub max_total: usize,
}

/// What adding steps to a workflow did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepsAdded {
    /// Stored; each step id with its task, in the order given.
    Added {
        workflow: WorkflowId,
        steps: Vec<(String, TaskId)>,
    },
    /// This step added these ids before (an earlier attempt of it): nothing
    /// stored again; their tasks.
    Replayed {
        workflow: WorkflowId,
        steps: Vec<(String, TaskId)>,
    },
    /// The adder is not running under this lease token.
    LeaseLost,
    /// The adder is no workflow's step.
    NotAStep,
    /// The workflow already has a step of this id (not added by this step).
    StepExists(String),
    /// The workflow would hold more than `max` steps.
    TooMany { total: usize, max: usize },
    /// The workflow is being cancelled.
    NotRunning,
}

/// A worker asking for up to `max` runnable tasks.
#[derive(Clone, Debug)]
pub struct TaskClaimParams {
    pub worker_id: String,
    pub max: u32,
    pub now: DateTime<Utc>,
    /// How long the claim holds before the rescuer may take the tasks back.
    pub lease: Duration,
    /// Only these queues; `None`: every queue.
    pub queues: Option<Vec<String>>,
    /// Most running tasks per concurrency key, across the cluster.
    pub key_limit: i32,
    /// Only tasks of these types (the ones the claimer can run); `None`: any.
    pub types: Option<Vec<String>>,
}

/// How many live tasks one queue holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    pub queue: String,
    pub queued: i64,
    pub running: i64,
    /// When its longest-waiting queued task came due (or will).
    pub oldest_queued_at: Option<DateTime<Utc>>,
}

/// A queue's limits, shared by every worker (kept in the store).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueueLimits {
    pub name: String,
    /// Most tasks of this queue running at once, across the cluster.
    pub concurrency: Option<i32>,
    /// Most tasks of this queue started per second, across the cluster
    /// (a token bucket holding up to `burst`).
    pub rate_per_second: Option<f64>,
    pub burst: Option<i32>,
    /// No claimer takes its tasks. Set by `queue_pause`; `queue_configure`
    /// leaves it as it is.
    #[serde(default)]
    pub paused: bool,
}

impl QueueLimits {
    /// The limits' own rules: concurrency and burst at least 1, a rate
    /// above 0. The error names the limit.
    pub fn check(&self) -> Result<(), String> {
        if self.concurrency.is_some_and(|c| c < 1) {
            return Err(format!(
                "queue {}: concurrency must be at least 1",
                self.name
            ));
        }
        if self.burst.is_some_and(|b| b < 1) {
            return Err(format!("queue {}: burst must be at least 1", self.name));
        }
        if self
            .rate_per_second
            .is_some_and(|r| !(r > 0.0 && r.is_finite()))
        {
            return Err(format!("queue {}: rate must be above 0", self.name));
        }
        Ok(())
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskOutcome {
    /// The task is done; `cache` says where to cache its result too.
    Succeeded {
        result: Value,
        cache: Option<CacheWrite>,
    },
    /// The attempt failed. With `retry_at` the task is queued again for then;
    /// without, it is dead.
    Failed {
        error: String,
        retry_at: Option<DateTime<Utc>>,
    },
}

/// One attempt's report, fenced by the token its claim returned.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskCompletion {
    pub id: TaskId,
    pub lease_token: i64,
    pub outcome: TaskOutcome,
    pub now: DateTime<Utc>,
}

/// What the store did with one completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionOutcome {
    /// Recorded.
    Applied,
    /// Rejected: the task is no longer running under this lease token (it was
    /// rescued and claimed again, or already completed).
    LeaseLost,
}

/// A worker extending the leases of the tasks it runs.
#[derive(Clone, Debug)]
pub struct TaskLeaseExtendParams {
    pub worker_id: String,
    /// (task, lease token) pairs.
    pub tasks: Vec<(TaskId, i64)>,
    pub lease_expires_at: DateTime<Utc>,
    /// Progress (0-100) reported by tasks that report it.
    pub progress: Vec<(TaskId, i16)>,
}

/// Taking back tasks whose lease expired.
#[derive(Clone, Debug)]
pub struct TaskRescueParams {
    pub now: DateTime<Utc>,
}

/// A draining worker handing tasks back to the queue unfinished.
#[derive(Clone, Debug)]
pub struct TaskReleaseParams {
    /// (task, lease token) pairs.
    pub tasks: Vec<(TaskId, i64)>,
    pub now: DateTime<Utc>,
}

/// A worker's periodic report of itself.
#[derive(Clone, Debug)]
pub struct WorkerHeartbeatParams {
    pub worker_id: String,
    pub status: WorkerStatus,
    pub concurrency: i32,
    pub active_tasks: i32,
    pub current_task: Option<String>,
    pub processed: i64,
    pub failed: i64,
    pub started_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// The task types it runs.
    pub task_types: Vec<String>,
}

/// A node asking to hold (or keep holding) a leader lease.
#[derive(Clone, Debug)]
pub struct LeaderAcquireParams {
    /// The role, e.g. `maintenance`.
    pub name: String,
    pub holder: String,
    pub now: DateTime<Utc>,
    /// How long the lease lasts unless renewed.
    pub ttl: Duration,
}

/// Housekeeping the maintenance leader does.
#[derive(Clone, Debug)]
pub struct MaintenancePruneParams {
    /// Succeeded tasks completed before this are deleted, with idempotency
    /// keys made and workflows finished before it.
    pub finished_before: DateTime<Utc>,
    /// Dead tasks completed before this are deleted (`None`: as succeeded).
    pub dead_before: Option<DateTime<Utc>>,
    /// Cancelled tasks completed before this are deleted (`None`: as
    /// succeeded).
    pub cancelled_before: Option<DateTime<Utc>>,
    /// Cache entries expired at this moment are deleted.
    pub now: DateTime<Utc>,
    /// Workers silent since before this are marked offline.
    pub workers_silent_since: DateTime<Utc>,
    /// Most rows deleted per kind in one call (keeps transactions short).
    pub limit: i64,
}

/// What a prune pass removed or changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaintenancePruneReport {
    pub tasks_deleted: u64,
    pub cache_deleted: u64,
    pub workers_marked_offline: u64,
    /// Idempotency keys older than the retention (their tasks are gone).
    pub idempotency_keys_deleted: u64,
    /// Workflows finished before the retention, with their graphs.
    pub workflows_deleted: u64,
}

/// Cache reads gathered by an API node, recorded in one call.
#[derive(Clone, Debug, Default)]
pub struct CacheAccessParams {
    /// (key, reads, last read) per entry read.
    pub hits: Vec<(String, i64, DateTime<Utc>)>,
    /// Lookups that found nothing.
    pub misses: i64,
}

/// One cache entry as `/cache/stats` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CacheEntryStats {
    pub key: String,
    pub access_count: i64,
    pub last_accessed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The shared cache's counters and its most read entries.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub entries: i64,
    pub hits: i64,
    pub misses: i64,
    pub top: Vec<CacheEntryStats>,
}

/// What a user's change to one task came to.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskChange {
    /// Done; the task as it is now.
    Changed(Box<Task>),
    /// No such task.
    NotFound,
    /// The task is in a state the change does not apply to.
    WrongState(TaskState),
}

/// Tasks finished in a recent window, by how they ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FinishedCounts {
    pub succeeded: i64,
    pub dead: i64,
}

impl FinishedCounts {
    /// From `(state, count)` rows; other states are ignored.
    pub fn from_rows(rows: Vec<(String, i64)>) -> Self {
        let mut c = FinishedCounts::default();
        for (state, n) in rows {
            match state.as_str() {
                "succeeded" => c.succeeded += n,
                "dead" => c.dead += n,
                _ => {}
            }
        }
        c
    }
}

/// How many tasks are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TaskCounts {
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub dead: i64,
    pub cancelled: i64,
    /// Workflow steps waiting for their parents.
    pub waiting: i64,
}

impl TaskCounts {
    /// Tasks not finished yet.
    pub fn pending(&self) -> i64 {
        self.queued + self.running + self.waiting
    }

    pub(crate) fn add(&mut self, state: &str, n: i64) {
        match state {
            "queued" => self.queued += n,
            "running" => self.running += n,
            "succeeded" => self.succeeded += n,
            "dead" => self.dead += n,
            "cancelled" => self.cancelled += n,
            "waiting" => self.waiting += n,
            _ => {}
        }
    }

    /// Counts from (state, count) rows.
    pub fn from_rows(rows: impl IntoIterator<Item = (String, i64)>) -> Self {
        let mut c = TaskCounts::default();
        for (state, n) in rows {
            c.add(&state, n);
        }
        c
    }
}

/// The request log: one row per API request.
#[async_trait]
pub trait RequestLog: Send + Sync + 'static {
    /// Appends many request-log rows in one transaction.
    async fn request_log_insert_many(&self, entries: &[RequestLogEntry]) -> Result<(), StoreError>;
    /// Counts logged requests per node.
    async fn request_log_stats(&self) -> Result<RequestLogStats, StoreError>;
}

/// The durable queue as submitters and workers use it.
#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    /// Queues a task; a cacheable one whose input matches a queued or running
    /// task returns that task instead.
    async fn task_insert(&self, params: TaskInsertParams) -> Result<Task, StoreError>;
    /// Queues many tasks in one transaction. Idempotent by id: a task already
    /// present is left as it is. A cacheable task whose input matches a task
    /// still queued or running is not queued again: it is folded into that
    /// one. Returns, per param, the id of the task that stands for it.
    async fn task_insert_many(
        &self,
        params: &[TaskInsertParams],
    ) -> Result<Vec<TaskId>, StoreError>;
    /// As [`task_insert_many`](Self::task_insert_many), but a submission
    /// whose cache key holds an unexpired result is answered from the cache
    /// instead of queued: the lookup rides on the insert (one round trip).
    async fn task_submit_many(
        &self,
        params: &[TaskInsertParams],
    ) -> Result<Vec<Queued>, StoreError>;
    /// Queues a task under an idempotency key: the first call with a key
    /// inserts the task; later calls within `window` of it return that task
    /// instead (`false`: not created now), or, when their request's
    /// fingerprint differs from the first's,
    /// [`StoreError::IdempotencyKeyReused`]. Safe under concurrent calls.
    async fn task_insert_idempotent(
        &self,
        params: TaskInsertParams,
        key: &IdempotencyKey,
        window: Duration,
    ) -> Result<(Task, bool), StoreError>;
    /// Atomically moves up to `max` due tasks, highest priority first, to
    /// `running` under a new lease; no task is handed to two claimers. Queue
    /// limits (concurrency, rate) and per-key limits hold across claimers.
    /// Tasks come back in claim order: priority, then run_at, then id.
    async fn task_claim(&self, params: TaskClaimParams) -> Result<Vec<ClaimedTask>, StoreError>;
    /// Records many attempts' outcomes in one transaction, each fenced by its lease token.
    async fn task_complete_many(
        &self,
        completions: &[TaskCompletion],
    ) -> Result<Vec<CompletionOutcome>, StoreError>;
    /// Pushes back the lease expiry of running tasks the worker still holds;
    /// returns those (the others were cancelled, or rescued and claimed again:
    /// the worker should stop running them).
    async fn task_lease_extend(
        &self,
        params: TaskLeaseExtendParams,
    ) -> Result<Vec<TaskId>, StoreError>;
    /// Queues again (or kills, when out of attempts) running tasks whose lease expired.
    async fn task_rescue_expired(&self, params: TaskRescueParams) -> Result<u64, StoreError>;
    /// Queues running tasks again without counting the attempt as failed.
    async fn task_release(&self, params: TaskReleaseParams) -> Result<u64, StoreError>;
    /// Changes whenever this process makes a task due, so idle workers in the
    /// same process wake at once; workers elsewhere fall back to polling
    /// (backends with a cross-process signal, such as LISTEN/NOTIFY, also bump it).
    fn task_inserted(&self) -> watch::Receiver<u64>;
}

/// Reading and steering tasks and queues: what operators and dashboards use.
#[async_trait]
pub trait TaskAdmin: Send + Sync + 'static {
    /// Reads a task.
    async fn task_get(&self, id: TaskId) -> Result<Option<Task>, StoreError>;
    /// Tasks matching the filters, newest first (ids are time-ordered).
    async fn task_list(&self, params: TaskListParams) -> Result<Vec<Task>, StoreError>;
    /// How many tasks are in each state.
    async fn task_counts(&self) -> Result<TaskCounts, StoreError>;
    /// How many tasks finished (succeeded, or went dead) at or after `since`:
    /// the cluster's recent throughput.
    async fn task_finished_counts(
        &self,
        since: DateTime<Utc>,
    ) -> Result<FinishedCounts, StoreError>;
    /// Queued tasks per type (types with queued tasks only), by name.
    async fn task_queued_by_type(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// Starts a bulk action; it runs in batches through [`TaskAdmin::bulk_work`].
    async fn bulk_start(&self, bulk: NewBulk) -> Result<BulkJob, StoreError>;
    async fn bulk_get(&self, id: BulkId) -> Result<Option<BulkJob>, StoreError>;
    /// The newest bulk actions first.
    async fn bulk_list(&self, limit: i64) -> Result<Vec<BulkJob>, StoreError>;
    /// Does one batch (one bounded transaction) of an unfinished bulk action
    /// that no one else holds, holding it as `holder`; the action after it,
    /// or `None` when there was nothing to do. A holder that stops (a
    /// restart) leaves it to the next caller once its lease ends.
    async fn bulk_work(
        &self,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<BulkJob>, StoreError>;
    /// Queues a dead task again with a fresh set of attempts.
    async fn task_retry(&self, id: TaskId, now: DateTime<Utc>) -> Result<TaskChange, StoreError>;
    /// Cancels a queued or running task. A running attempt is fenced off: its
    /// lease token changes, so its completion and lease renewals are refused.
    async fn task_cancel(&self, id: TaskId, now: DateTime<Utc>) -> Result<TaskChange, StoreError>;
    /// Sets (or, with no limits, clears) a queue's limits.
    async fn queue_configure(&self, limits: &QueueLimits) -> Result<(), StoreError>;
    /// Pauses a queue (no claimer takes its tasks), or resumes it. A pause
    /// returns once every claimer, in every process, holds to it; a resume
    /// wakes this process's waiting claimers at once (others' within a
    /// second).
    async fn queue_pause(&self, name: &str, paused: bool) -> Result<(), StoreError>;
    /// Every queue with limits or a pause.
    async fn queue_list(&self) -> Result<Vec<QueueLimits>, StoreError>;
    /// Queued and running tasks per queue (queues with live tasks only).
    async fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError>;
    /// Tasks that succeeded at or after `since`, per queue (queues with
    /// none left out): each queue's throughput.
    async fn queue_succeeded_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError>;
}

/// The shared result cache.
#[async_trait]
pub trait ResultCache: Send + Sync + 'static {
    /// A cached result, if present and not expired at `now`.
    async fn cache_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<Value>, StoreError>;
    /// Records cache reads: per-entry access counts and the hit/miss counters.
    async fn cache_record_access(&self, params: &CacheAccessParams) -> Result<(), StoreError>;
    /// The cache's counters and its `top` most read entries.
    async fn cache_stats(&self, top: i64) -> Result<CacheStats, StoreError>;
}

/// Ingested events.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Stores events in one transaction; an event whose id is already stored
    /// is skipped. Returns how many were new.
    async fn event_insert_many(&self, events: &[NewEvent]) -> Result<u64, StoreError>;
    /// The latest `limit` events, newest first.
    async fn event_list_latest(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError>;
    /// How many events are stored.
    async fn event_count(&self) -> Result<i64, StoreError>;
    /// Takes an idempotency key for a batch of events whose request has
    /// `key.fingerprint`; a key already taken by the same request is fine,
    /// by another one [`StoreError::IdempotencyKeyReused`].
    async fn event_key_take(
        &self,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// Workers reporting themselves.
#[async_trait]
pub trait WorkerRegistry: Send + Sync + 'static {
    /// Creates or updates the worker's registry row.
    async fn worker_heartbeat(&self, params: WorkerHeartbeatParams) -> Result<(), StoreError>;
    /// All workers, as last reported.
    async fn worker_list(&self) -> Result<Vec<WorkerInfo>, StoreError>;
    /// Records the task types a node runs with and their defaults (at its
    /// start), for tasks queued from SQL (`weir_enqueue`): a type no node
    /// published is refused there.
    async fn task_types_publish(
        &self,
        types: &[crate::TaskTypeDefaults],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// The maintenance leader's lease and its housekeeping.
#[async_trait]
pub trait Leadership: Send + Sync + 'static {
    /// Takes or renews the named leader lease; true when `holder` holds it.
    async fn leader_acquire(&self, params: LeaderAcquireParams) -> Result<bool, StoreError>;
    /// Deletes old finished tasks and expired cache entries, marks silent
    /// workers offline.
    async fn maintenance_prune(
        &self,
        params: MaintenancePruneParams,
    ) -> Result<MaintenancePruneReport, StoreError>;
}

/// Workflows: graphs of tasks whose steps start as their parents end.
#[async_trait]
pub trait Workflows: Send + Sync + 'static {
    /// Stores a workflow (its graph checked, its steps in an order where
    /// parents come first) in one transaction: steps without parents
    /// queued, the others waiting.
    async fn workflow_insert(&self, workflow: NewWorkflow) -> Result<(), StoreError>;
    /// The first call with `key` stores the workflow (`None`); later ones
    /// within `window` get the workflow the key names, when they carry the
    /// first one's fingerprint (else `IdempotencyKeyReused`).
    async fn workflow_insert_idempotent(
        &self,
        workflow: NewWorkflow,
        key: &IdempotencyKey,
        window: Duration,
    ) -> Result<Option<WorkflowId>, StoreError>;
    /// How many workflows the store holds in each status (statuses with none
    /// left out).
    async fn workflow_counts(&self) -> Result<Vec<(WorkflowStatus, i64)>, StoreError>;
    /// A workflow with its steps.
    async fn workflow_get(&self, id: WorkflowId) -> Result<Option<Workflow>, StoreError>;
    /// A workflow without its steps (one row: cheap to read often).
    async fn workflow_summary(&self, id: WorkflowId) -> Result<Option<Workflow>, StoreError>;
    /// Each workflow this process's store finishes; other processes'
    /// finishes are not seen here (poll as well).
    fn workflow_finished(&self) -> tokio::sync::broadcast::Receiver<WorkflowId>;
    /// Adds steps to the workflow of a running step, in one transaction:
    /// each step waiting on the adder (its children) now waits on the added
    /// steps too.
    async fn workflow_add_steps(&self, add: NewSteps) -> Result<StepsAdded, StoreError>;
    /// The workflow and step id of each of these tasks that is a step.
    async fn steps_of_tasks(
        &self,
        tasks: &[TaskId],
    ) -> Result<Vec<(TaskId, WorkflowId, String)>, StoreError>;
    /// Workflows matching the filters, newest first, without their steps.
    async fn workflow_list(&self, params: WorkflowListParams) -> Result<Vec<Workflow>, StoreError>;
    /// Cancels every step that has not ended (a running one is fenced off,
    /// as a task cancel does); `None` when there is no such workflow.
    async fn workflow_cancel(
        &self,
        id: WorkflowId,
        now: DateTime<Utc>,
    ) -> Result<Option<Workflow>, StoreError>;
}

/// The audit log of manage and admin actions.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    async fn audit_record(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Entries matching the params, newest first.
    async fn audit_list(&self, params: &AuditListParams) -> Result<Vec<AuditEntry>, StoreError>;
}

/// The whole store: every role at once. Callers that need one role take that
/// role's trait (an `Arc<dyn Store>` coerces to any of them).
#[async_trait]
pub trait Store:
    RequestLog
    + TaskQueue
    + TaskAdmin
    + ResultCache
    + EventLog
    + WorkerRegistry
    + Leadership
    + Workflows
    + AuditLog
{
    /// The backend's name, e.g. `sqlite`.
    fn backend(&self) -> &'static str;
    /// A round trip to the database: whether it answers now.
    async fn ping(&self) -> Result<(), StoreError>;
}
