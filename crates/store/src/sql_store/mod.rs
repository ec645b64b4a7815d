//! [`SqlStore`]: the one implementation of every store role, over a [`Driver`].
//!
//! What is policy lives here, once, whatever the dialect: claim admission
//! ([`claim`]), submissions folded and idempotent ([`submit`]), what a
//! step's end does to its workflow ([`workflow`]), when workers are woken, a change's answer when it did not apply, the leader lease's
//! term, pruning, and riding out a busy database ([`BusyRetry`]).

mod bulk;
mod claim;
mod submit;
mod workflow;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::watch;
use weir_core::{
    AuditEntry, AuditListParams, AuditLog, BulkId, BulkJob, CacheAccessParams, CacheStats,
    ClaimedTask, CompletionOutcome, EventLog, FinishedCounts, IdempotencyKey, LeaderAcquireParams,
    Leadership, MaintenancePruneParams, MaintenancePruneReport, NewBulk, NewEvent, QueueDepth,
    QueueLimits, Queued, RequestLog, RequestLogEntry, RequestLogStats, ResultCache, Store,
    StoreError, StoredEvent, Task, TaskAdmin, TaskChange, TaskClaimParams, TaskCompletion,
    TaskCounts, TaskId, TaskInsertParams, TaskLeaseExtendParams, TaskListParams, TaskOutcome,
    TaskQueue, TaskReleaseParams, TaskRescueParams, TaskState, WorkerHeartbeatParams, WorkerInfo,
    WorkerRegistry,
};

use crate::driver::{AppliedCompletion, CompletedOutside, Driver, Wakeups};
use crate::hints::{depths_from_rows, lease_end, KeyedTasksHint, LimitedQueues};
use crate::BusyRetry;

/// How long the audit log keeps an entry.
const AUDIT_RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(90);

/// What a rescued attempt's error says.
const LEASE_EXPIRED: &str = "lease expired: the worker running this attempt stopped responding";

/// The store over one dialect's driver. Cheap to clone: clones share the
/// driver, the wake-up channel and the claim's memories.
#[derive(Clone)]
pub struct SqlStore {
    shared: Arc<Shared>,
    /// Set for callers that would rather wait out a busy database (API nodes).
    busy: Option<BusyRetry>,
}

struct Shared {
    driver: Box<dyn Driver>,
    wakeups: Wakeups,
    /// Each workflow that finishes here.
    finished: tokio::sync::broadcast::Sender<weir_core::WorkflowId>,
    listening: std::sync::Once,
    limited: LimitedQueues,
    keyed: KeyedTasksHint,
}

impl SqlStore {
    /// Fills in the workflow and step id of the tasks that are steps.
    async fn name_steps(&self, tasks: &mut [Task]) -> Result<(), StoreError> {
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
        let steps = weir_core::Workflows::steps_of_tasks(self, &ids).await?;
        if steps.is_empty() {
            return Ok(());
        }
        let by_task: std::collections::HashMap<TaskId, (weir_core::WorkflowId, String)> = steps
            .into_iter()
            .map(|(task, workflow, step)| (task, (workflow, step)))
            .collect();
        for task in tasks {
            if let Some((workflow, step)) = by_task.get(&task.id) {
                task.workflow_id = Some(*workflow);
                task.step_id = Some(step.clone());
            }
        }
        Ok(())
    }

    pub fn new(driver: impl Driver) -> Self {
        // A waiter that lags behind more than this re-reads its workflow.
        let (finished, _) = tokio::sync::broadcast::channel(1024);
        SqlStore {
            shared: Arc::new(Shared {
                driver: Box::new(driver),
                wakeups: Wakeups::default(),
                finished,
                listening: std::sync::Once::new(),
                limited: LimitedQueues::default(),
                keyed: KeyedTasksHint::default(),
            }),
            busy: None,
        }
    }

    /// The same store, whose calls retry through a busy or briefly
    /// unreachable database within `retry`'s budget.
    pub fn with_busy_retry(&self, retry: BusyRetry) -> Self {
        SqlStore {
            shared: self.shared.clone(),
            busy: Some(retry),
        }
    }

    fn driver(&self) -> &dyn Driver {
        &*self.shared.driver
    }

    /// Runs one store call, retrying it through a busy database when asked.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        match &self.busy {
            Some(retry) => retry.run(op).await,
            None => {
                let mut op = op;
                op().await
            }
        }
    }

    /// Tasks became due: wake this process's workers, and the others'.
    fn wake_workers(&self) {
        self.wake(true);
    }

    /// Wakes workers here and elsewhere; `keyed`: tasks with a concurrency
    /// key may have become due (claims then look for them).
    fn wake(&self, keyed: bool) {
        self.shared.wakeups.woken(keyed);
        self.driver().wake_other_processes(keyed);
    }

    /// Wakes what the end of steps concerns: workers for a queued step,
    /// waiters for a finished workflow.
    fn after_steps(&self, outcome: workflow::StepsOutcome) {
        if outcome.queued {
            self.wake_workers();
        }
        for workflow in outcome.finished {
            // No receiver is no waiter: nothing to tell.
            let _ = self.shared.finished.send(workflow);
        }
    }

    fn finished_receiver(&self) -> tokio::sync::broadcast::Receiver<weir_core::WorkflowId> {
        self.shared.finished.subscribe()
    }

    /// Records completions and what the steps among them end in their
    /// workflows, in one transaction; returns the ids applied (with the
    /// state each ended in) and what the steps' ends did.
    async fn complete_in_tx(
        &self,
        completions: &[TaskCompletion],
    ) -> Result<(Vec<AppliedCompletion>, workflow::StepsOutcome), StoreError> {
        let now = completions
            .iter()
            .map(|c| c.now)
            .max()
            .unwrap_or_else(Utc::now);
        let mut tx = self.driver().begin().await?;
        let applied = tx.task_complete_many(completions).await?;
        let ended: Vec<(TaskId, TaskState)> = applied
            .iter()
            .filter(|a| a.maybe_step)
            .filter_map(|a| a.ended.map(|s| (a.id, s)))
            .collect();
        let queued = workflow::steps_ended(&mut *tx, &ended, now).await?;
        tx.commit().await?;
        Ok((applied, queued))
    }

    /// Records completions: all but steps' ends without a transaction
    /// where the driver can, the steps' ends (or everything) with their
    /// workflows' bookkeeping in one. Each part is retried through a busy
    /// database on its own, so a retry of the second never repeats the
    /// first. (Should the second fail outright, the caller's retry of the
    /// whole batch finds the first part's tasks ended: reported as leases
    /// lost, their outcomes already stored.)
    async fn complete(
        &self,
        completions: &[TaskCompletion],
    ) -> Result<(Vec<AppliedCompletion>, workflow::StepsOutcome), StoreError> {
        let outside = self
            .call(|| self.driver().task_complete_outside_workflows(completions))
            .await?;
        let Some(CompletedOutside {
            mut applied,
            steps_left,
        }) = outside
        else {
            return self.call(|| self.complete_in_tx(completions)).await;
        };
        if steps_left.is_empty() {
            return Ok((applied, workflow::StepsOutcome::default()));
        }
        let steps: std::collections::HashSet<TaskId> = steps_left.into_iter().collect();
        let rest: Vec<TaskCompletion> = completions
            .iter()
            .filter(|c| steps.contains(&c.id))
            .cloned()
            .collect();
        let (more, outcome) = self.call(|| self.complete_in_tx(&rest)).await?;
        applied.extend(more);
        Ok((applied, outcome))
    }

    /// Why a change to a task did not apply: it is missing, or in another state.
    async fn unchanged(&self, id: TaskId) -> Result<TaskChange, StoreError> {
        Ok(match self.driver().task_get(id).await? {
            Some(t) => TaskChange::WrongState(t.state),
            None => TaskChange::NotFound,
        })
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.driver().name()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.driver().ping().await
    }
}

#[async_trait]
impl RequestLog for SqlStore {
    async fn request_log_insert_many(&self, entries: &[RequestLogEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.call(|| self.driver().request_log_insert_many(entries))
            .await
    }

    async fn request_log_stats(&self) -> Result<RequestLogStats, StoreError> {
        self.call(|| self.driver().request_log_stats()).await
    }
}

#[async_trait]
impl TaskQueue for SqlStore {
    async fn task_insert(&self, p: TaskInsertParams) -> Result<Task, StoreError> {
        self.call(|| self.insert_one(&p)).await
    }

    async fn task_insert_many(
        &self,
        params: &[TaskInsertParams],
    ) -> Result<Vec<TaskId>, StoreError> {
        // An empty batch makes no round trip: `insert_many` has nothing pending.
        let queued = self.call(|| self.insert_many(params, false)).await?;
        queued
            .into_iter()
            .map(|q| match q {
                Queued::Task(id) => Ok(id),
                Queued::Cached(_) => Err(StoreError::Corrupt(
                    "an insert that does not read the cache was answered from it".into(),
                )),
            })
            .collect()
    }

    async fn task_submit_many(
        &self,
        params: &[TaskInsertParams],
    ) -> Result<Vec<Queued>, StoreError> {
        self.call(|| self.insert_many(params, true)).await
    }

    async fn task_insert_idempotent(
        &self,
        p: TaskInsertParams,
        key: &IdempotencyKey,
        window: Duration,
    ) -> Result<(Task, bool), StoreError> {
        self.call(|| self.insert_idempotent(&p, key, window)).await
    }

    async fn task_claim(&self, p: TaskClaimParams) -> Result<Vec<ClaimedTask>, StoreError> {
        if p.max == 0 {
            return Ok(Vec::new());
        }
        self.call(|| self.claim(&p)).await
    }

    async fn task_complete_many(
        &self,
        completions: &[TaskCompletion],
    ) -> Result<Vec<CompletionOutcome>, StoreError> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let (applied, steps) = self.complete(completions).await?;
        let retried = completions.iter().any(|c| {
            matches!(
                c.outcome,
                TaskOutcome::Failed {
                    retry_at: Some(_),
                    ..
                }
            )
        });
        // Workers claim when woken, not when a task ends; an end that may
        // free a slot a limit held a task back for (a concurrency key's, a
        // limited queue's) wakes them, as a retry does.
        let freed = applied.iter().any(|a| a.limited && a.ended.is_some());
        if retried || freed {
            self.wake_workers();
        }
        self.after_steps(steps);
        let mut applied: std::collections::HashSet<TaskId> =
            applied.into_iter().map(|a| a.id).collect();
        // A task listed twice in one batch is applied once: the first wins.
        Ok(completions
            .iter()
            .map(|c| {
                if applied.remove(&c.id) {
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
        self.call(|| self.driver().task_lease_extend(&p)).await
    }

    async fn task_rescue_expired(&self, p: TaskRescueParams) -> Result<u64, StoreError> {
        let (done, steps) = self
            .call(|| async {
                let mut tx = self.driver().begin().await?;
                let done = tx.task_rescue_expired(p.now, LEASE_EXPIRED).await?;
                let dead: Vec<_> = done.dead.iter().map(|id| (*id, TaskState::Dead)).collect();
                let queued = workflow::steps_ended(&mut *tx, &dead, p.now).await?;
                tx.commit().await?;
                Ok((done, queued))
            })
            .await?;
        if done.requeued > 0 {
            self.wake_workers();
        }
        self.after_steps(steps);
        Ok(done.dead.len() as u64 + done.requeued)
    }

    async fn task_release(&self, p: TaskReleaseParams) -> Result<u64, StoreError> {
        if p.tasks.is_empty() {
            return Ok(0);
        }
        let released = self.call(|| self.driver().task_release(&p)).await?;
        if released > 0 {
            self.wake_workers();
        }
        Ok(released)
    }

    fn task_inserted(&self) -> watch::Receiver<u64> {
        // Only workers subscribe: the cross-process listener starts with the first.
        self.shared.listening.call_once(|| {
            self.driver()
                .listen_for_wakeups(self.shared.wakeups.clone())
        });
        self.shared.wakeups.inserted.subscribe()
    }
}

#[async_trait]
impl TaskAdmin for SqlStore {
    async fn task_get(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        self.call(|| self.driver().task_get(id)).await
    }

    async fn task_list(&self, p: TaskListParams) -> Result<Vec<Task>, StoreError> {
        let mut tasks = self.call(|| self.driver().task_list(&p)).await?;
        self.name_steps(&mut tasks).await?;
        Ok(tasks)
    }

    async fn task_counts(&self) -> Result<TaskCounts, StoreError> {
        let rows = self.call(|| self.driver().task_state_counts()).await?;
        Ok(TaskCounts::from_rows(rows))
    }

    async fn task_finished_counts(
        &self,
        since: DateTime<Utc>,
    ) -> Result<FinishedCounts, StoreError> {
        let rows = self
            .call(|| self.driver().task_finished_since(since))
            .await?;
        Ok(FinishedCounts::from_rows(rows))
    }

    async fn task_queued_by_type(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.call(|| self.driver().task_queued_by_type()).await
    }

    async fn bulk_start(&self, bulk: NewBulk) -> Result<BulkJob, StoreError> {
        self.bulk_insert(bulk).await
    }

    async fn bulk_get(&self, id: BulkId) -> Result<Option<BulkJob>, StoreError> {
        self.call(|| self.driver().bulk_get(id)).await
    }

    async fn bulk_list(&self, limit: i64) -> Result<Vec<BulkJob>, StoreError> {
        self.call(|| self.driver().bulk_list(limit)).await
    }

    async fn bulk_work(
        &self,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<BulkJob>, StoreError> {
        self.bulk_batch(holder, now).await
    }

    async fn task_retry(&self, id: TaskId, now: DateTime<Utc>) -> Result<TaskChange, StoreError> {
        let retried = self
            .call(|| async {
                let mut tx = self.driver().begin().await?;
                let task = tx.task_retry_dead(id, now).await?;
                if task.is_some() {
                    workflow::step_retried(&mut *tx, id, now).await?;
                }
                tx.commit().await?;
                Ok(task)
            })
            .await?;
        match retried {
            Some(task) => {
                self.wake_workers();
                Ok(TaskChange::Changed(Box::new(task)))
            }
            None => self.unchanged(id).await,
        }
    }

    async fn task_cancel(&self, id: TaskId, now: DateTime<Utc>) -> Result<TaskChange, StoreError> {
        let (cancelled, steps) = self
            .call(|| async {
                let mut tx = self.driver().begin().await?;
                let task = tx.task_cancel_live(id, now).await?;
                let ended = match &task {
                    Some(_) => vec![(id, TaskState::Cancelled)],
                    None => Vec::new(),
                };
                let queued = workflow::steps_ended(&mut *tx, &ended, now).await?;
                tx.commit().await?;
                Ok((task, queued))
            })
            .await?;
        self.after_steps(steps);
        if cancelled.is_some() {
            // A running task's slot under a limit may be free now.
            self.wake_workers();
        }
        match cancelled {
            Some(task) => Ok(TaskChange::Changed(Box::new(task))),
            None => self.unchanged(id).await,
        }
    }

    async fn queue_configure(&self, limits: &QueueLimits) -> Result<(), StoreError> {
        self.call(|| self.driver().queue_save_limits(limits))
            .await?;
        // This process's claims see the change at once; others within a second.
        self.shared.limited.invalidate();
        // A limit raised or lifted may let held-back tasks be claimed.
        self.wake_workers();
        Ok(())
    }

    async fn queue_list(&self) -> Result<Vec<QueueLimits>, StoreError> {
        self.call(|| self.driver().queue_list()).await
    }

    async fn queue_pause(&self, name: &str, paused: bool) -> Result<(), StoreError> {
        self.call(|| self.driver().queue_save_paused(name, paused))
            .await?;
        self.shared.limited.invalidate();
        if paused {
            // Other processes keep the names of queues with limits (which
            // their fast claim skips) for a while: once it has passed, and
            // any claim begun before the pause with it, none takes from it.
            let settle = std::time::Duration::from_millis(500);
            tokio::time::sleep(crate::hints::LimitedQueues::TTL + settle).await;
        } else {
            self.wake_workers();
        }
        Ok(())
    }

    async fn queue_succeeded_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.call(|| self.driver().task_succeeded_by_queue(since))
            .await
    }

    async fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        let rows = self.call(|| self.driver().task_live_by_queue()).await?;
        Ok(depths_from_rows(rows))
    }
}

#[async_trait]
impl ResultCache for SqlStore {
    async fn cache_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<Value>, StoreError> {
        self.call(|| self.driver().cache_get(key, now)).await
    }

    async fn cache_record_access(&self, p: &CacheAccessParams) -> Result<(), StoreError> {
        if p.hits.is_empty() && p.misses == 0 {
            return Ok(());
        }
        self.call(|| self.driver().cache_record_access(p)).await
    }

    async fn cache_stats(&self, top: i64) -> Result<CacheStats, StoreError> {
        let (entries, hits, misses) = self.call(|| self.driver().cache_counters()).await?;
        let top = self.call(|| self.driver().cache_top(top)).await?;
        Ok(CacheStats {
            entries,
            hits,
            misses,
            top,
        })
    }
}

#[async_trait]
impl EventLog for SqlStore {
    async fn event_insert_many(&self, events: &[NewEvent]) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        self.call(|| self.driver().event_insert_many(events)).await
    }

    async fn event_list_latest(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        self.call(|| self.driver().event_list_latest(limit)).await
    }

    async fn event_count(&self) -> Result<i64, StoreError> {
        self.call(|| self.driver().event_count()).await
    }

    async fn event_key_take(
        &self,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // No fingerprint, nothing to compare: the ids the key gives its
        // events deduplicate a resend.
        let Some(fingerprint) = key.fingerprint.as_deref() else {
            return Ok(());
        };
        let held = self
            .call(|| self.driver().event_key_take(&key.key, fingerprint, now))
            .await?;
        if held == fingerprint {
            Ok(())
        } else {
            Err(StoreError::IdempotencyKeyReused(
                "an earlier event batch".into(),
            ))
        }
    }
}

#[async_trait]
impl AuditLog for SqlStore {
    async fn audit_record(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.call(|| self.driver().audit_insert(entry)).await
    }

    async fn audit_list(&self, params: &AuditListParams) -> Result<Vec<AuditEntry>, StoreError> {
        self.call(|| self.driver().audit_list(params)).await
    }
}

#[async_trait]
impl WorkerRegistry for SqlStore {
    async fn worker_heartbeat(&self, p: WorkerHeartbeatParams) -> Result<(), StoreError> {
        self.call(|| self.driver().worker_upsert(&p)).await
    }

    async fn worker_list(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        self.call(|| self.driver().worker_list()).await
    }

    async fn task_types_publish(
        &self,
        types: &[weir_core::TaskTypeDefaults],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.call(|| self.driver().task_types_save(types, now))
            .await
    }
}

#[async_trait]
impl Leadership for SqlStore {
    async fn leader_acquire(&self, p: LeaderAcquireParams) -> Result<bool, StoreError> {
        let until = lease_end(p.now, p.ttl);
        let holder = self.call(|| self.driver().leader_take(&p, until)).await?;
        Ok(holder.as_deref() == Some(p.holder.as_str()))
    }

    async fn maintenance_prune(
        &self,
        p: MaintenancePruneParams,
    ) -> Result<MaintenancePruneReport, StoreError> {
        let d = self.driver();
        let mut tasks_deleted = 0;
        for (state, before) in [
            (TaskState::Succeeded, p.finished_before),
            (TaskState::Dead, p.dead_before.unwrap_or(p.finished_before)),
            (
                TaskState::Cancelled,
                p.cancelled_before.unwrap_or(p.finished_before),
            ),
        ] {
            tasks_deleted += self
                .call(|| d.prune_finished_tasks(state, before, p.now, p.limit))
                .await?;
        }
        // Who did what outlives what they did to: kept a quarter.
        self.call(|| d.prune_audit(p.now - AUDIT_RETENTION, p.limit))
            .await?;
        Ok(MaintenancePruneReport {
            tasks_deleted,
            // Keys of tasks past the retention: their tasks are gone (or going).
            idempotency_keys_deleted: self
                .call(|| d.prune_idempotency_keys(p.finished_before, p.limit))
                .await?,
            cache_deleted: self.call(|| d.prune_cache(p.now, p.limit)).await?,
            workflows_deleted: self
                .call(|| d.prune_workflows(p.finished_before, p.limit))
                .await?,
            workers_marked_offline: self
                .call(|| d.workers_mark_offline(p.workers_silent_since))
                .await?,
        })
    }
}
