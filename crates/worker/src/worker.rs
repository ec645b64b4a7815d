//! One worker's loop: claim → execute → complete, with heartbeats and drain.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{counter, gauge, Counter, Gauge};
use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::{interval, sleep, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use weir_core::{
    Attempt, AttemptDefaults, AttemptEnd, ClaimedTask, Store, TaskClaimParams, TaskCompletion,
    TaskLeaseExtendParams, TaskReleaseParams, WorkerHeartbeatParams, WorkerStatus,
};
use weir_store::Submitter;

use crate::completer::Completer;
use crate::handler::{Handler, HandlerError, Job, Progress, WorkflowSteps};
use crate::prefetch::Prefetch;
use crate::{maintenance, WorkerConfig};

/// A claim in flight: the tasks and how long the claim took, and how many
/// were asked for. A task of its own, not a future polled by the loop: the
/// loop awaits other store calls in between, and a claim's transaction
/// left unpolled would hold SQLite's write lock against them.
type ClaimFuture = tokio::task::JoinHandle<(
    Result<(Vec<ClaimedTask>, Duration), weir_core::StoreError>,
    usize,
)>;

/// What a worker did before it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Attempts that succeeded and were recorded.
    pub processed: i64,
    /// Attempts that failed.
    pub failed: i64,
    /// Tasks handed back to the queue unfinished at the end of the drain.
    pub released: u64,
}

/// Runs one worker until `shutdown` is cancelled and the drain is over.
pub async fn run(
    store: Arc<dyn Store>,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> WorkerReport {
    let completer = Completer::spawn(
        store.clone(),
        config.worker_id.clone(),
        config.poll_interval,
    );
    weir_telemetry::install();
    let config_worker_id = config.worker_id.clone();
    let submitter = Arc::new(Submitter::new(
        store.clone(),
        config.task_types.clone(),
        weir_core::DEFAULT_MAX_ATTEMPTS,
        Duration::ZERO,
    ));
    let mut w = Worker {
        submitter,
        types: config.handlers.type_names(),
        store,
        config,
        started_at: Utc::now(),
        running: JoinSet::new(),
        prefetch: Prefetch::default(),
        held: HashMap::new(),
        aborts: HashMap::new(),
        completer: Some(completer),
        report: WorkerReport::default(),
        metrics: WorkerMetrics::new(&config_worker_id),
    };
    // For tasks queued from SQL: the types this worker knows and their defaults.
    let defaults = w
        .config
        .task_types
        .defaults(weir_core::DEFAULT_MAX_ATTEMPTS);
    if let Err(e) = w.store.task_types_publish(&defaults, Utc::now()).await {
        tracing::warn!(error = %e, "could not publish the task types");
    }
    // Queue limits live in the store, so every worker enforces the same ones.
    for limits in &w.config.queue_limits {
        if let Err(e) = w.store.queue_configure(limits).await {
            tracing::error!(queue = %limits.name, error = %e, "could not set queue limits");
        }
    }
    w.heartbeat(WorkerStatus::Online).await;
    // The rescuer, the cleaner and the scheduler run as tasks of their own
    // and stop when the drain begins.
    let services_stop = shutdown.child_token();
    let services = maintenance::spawn(
        w.store.clone(),
        Arc::new(w.config.clone()),
        services_stop.clone(),
    );
    w.run_loop(shutdown).await;
    services_stop.cancel();
    for service in services {
        let _ = service.await;
    }
    w.report
}

struct Worker {
    /// Where handlers add steps to their workflows.
    submitter: Arc<Submitter>,
    /// The types this worker has handlers for: what it claims and reports.
    types: Vec<String>,
    store: Arc<dyn Store>,
    config: WorkerConfig,
    started_at: DateTime<Utc>,
    running: JoinSet<AttemptEnd>,
    /// Claimed tasks waiting for a slot.
    prefetch: Prefetch,
    /// What each running tokio task is running, to complete or release it.
    held: HashMap<tokio::task::Id, ClaimedTask>,
    /// How to stop each running tokio task (a cancelled or lost task), and
    /// where it reports progress.
    aborts: HashMap<tokio::task::Id, Running>,
    /// Records finished attempts in batches; taken at the end of the drain.
    completer: Option<Completer>,
    report: WorkerReport,
    metrics: WorkerMetrics,
}

/// How to stop one running attempt, and where it reports progress.
struct Running {
    abort: tokio::task::AbortHandle,
    cancel: CancellationToken,
    progress: Progress,
    started: Instant,
}

impl Running {
    fn stop(self) {
        self.cancel.cancel();
        self.abort.abort();
    }
}

/// This worker's Prometheus series, labelled with its id (`worker_id`).
struct WorkerMetrics {
    processed: Counter,
    failed: Counter,
    retries: Counter,
    active: Gauge,
    /// Claims answered, and the tasks they brought: their ratio is the
    /// claims' mean batch, which shows whether slots wait on round trips.
    claims: Counter,
    claimed: Counter,
    /// When its registry row was last written: a worker whose heartbeats
    /// fail is marked offline by the cleaner and its leases run out.
    heartbeat: Gauge,
}

impl WorkerMetrics {
    fn new(worker_id: &str) -> Self {
        let id = worker_id.to_owned();
        WorkerMetrics {
            processed: counter!("worker_messages_processed_total", "worker_id" => id.clone()),
            failed: counter!("worker_messages_failed_total", "worker_id" => id.clone()),
            retries: counter!("worker_retry_attempts_total", "worker_id" => id.clone()),
            active: gauge!("worker_active_tasks", "worker_id" => id.clone()),
            claims: counter!("worker_claims_total", "worker_id" => id.clone()),
            claimed: counter!("worker_claimed_tasks_total", "worker_id" => id.clone()),
            heartbeat: gauge!("worker_last_heartbeat_timestamp_seconds", "worker_id" => id),
        }
    }
}

impl Worker {
    async fn run_loop(&mut self, shutdown: CancellationToken) {
        let mut inserted = self.store.task_inserted();
        let mut heartbeat = interval(self.config.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut drain_deadline: Option<Instant> = None;
        let mut claim_not_before = Instant::now();
        // At most one claim in flight, awaited beside the running tasks: a
        // slot that frees meanwhile starts a task in hand at once.
        let mut claiming: Option<ClaimFuture> = None;
        // Whether to claim again: after a wake-up (tasks were queued, or a
        // task's end freed a slot a limit held one back for), a full batch
        // (there may be more), or a poll; not because a task ended — the
        // queue was empty when the last claim came back short, and a claim
        // for the freed slot would come back empty too.
        let mut claim_due = true;
        // The next poll, a claim interval after the last claim answered:
        // the fallback for wake-ups that never come (a lost NOTIFY, a
        // delayed task coming due). A deadline, not a sleep per turn, so a
        // busy loop polls too.
        let mut poll_at = Instant::now() + self.config.poll_interval;

        loop {
            let draining = drain_deadline.is_some();
            if !draining && claim_due && claiming.is_none() && Instant::now() >= claim_not_before {
                claiming = self.begin_claim();
                claim_due = claiming.is_none();
            }
            if draining && self.running.is_empty() && claiming.is_none() {
                break;
            }
            let has_room = !draining && self.in_hand() < self.config.concurrency + self.ahead();
            let stale_at = self.prefetch.deadline();
            tokio::select! {
                _ = shutdown.cancelled(), if !draining => {
                    tracing::info!(worker = %self.config.worker_id, running = self.running.len(), "draining");
                    drain_deadline = Some(Instant::now() + self.config.shutdown_grace);
                    // Tasks in hand go back now, for workers that stay.
                    let waiting = self.prefetch.take_stale(true);
                    self.hand_back(waiting).await;
                    self.heartbeat(WorkerStatus::Draining).await;
                }
                joined = async { claiming.as_mut().expect("a claim in flight").await }, if claiming.is_some() => {
                    claiming = None;
                    poll_at = Instant::now() + self.config.poll_interval;
                    let (claimed, asked) = joined.unwrap_or_else(|e| {
                        (Err(weir_core::StoreError::Internal(format!("the claim's task failed: {e}"))), 0)
                    });
                    match claimed {
                        Ok((tasks, took)) => {
                            let full = tasks.len() == asked;
                            claim_due |= self.claimed(tasks, took, draining).await && full;
                        }
                        Err(e) => {
                            tracing::warn!(worker = %self.config.worker_id, error = %e, "claim failed");
                            claim_not_before = Instant::now() + self.config.poll_interval;
                            poll_at = claim_not_before;
                            claim_due = true;
                        }
                    }
                }
                Some(joined) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    self.finished(joined);
                    while let Some(joined) = self.running.try_join_next_with_id() {
                        self.finished(joined);
                    }
                    self.start_waiting();
                }
                _ = sleep_until(stale_at.unwrap_or_else(Instant::now)), if stale_at.is_some() => {
                    let stale = self.prefetch.take_stale(false);
                    self.hand_back(stale).await;
                }
                changed = inserted.changed(), if has_room => {
                    claim_due = true;
                    if changed.is_err() {
                        // The store is gone; fall back to polling only.
                        inserted = self.store.task_inserted();
                        sleep(self.config.poll_interval).await;
                    }
                }
                _ = sleep_until(poll_at), if has_room && claiming.is_none() => {
                    poll_at = Instant::now() + self.config.poll_interval;
                    claim_due = true;
                }
                _ = heartbeat.tick() => {
                    let status = if draining { WorkerStatus::Draining } else { WorkerStatus::Online };
                    self.heartbeat(status).await;
                    self.extend_leases().await;
                }
                _ = sleep_until(drain_deadline.unwrap_or_else(Instant::now)), if draining => {
                    if let Some(claim) = claiming.take() {
                        if let Ok((Ok((tasks, _)), _)) = claim.await {
                            self.hand_back(tasks).await;
                        }
                    }
                    self.release_unfinished().await;
                    break;
                }
            }
        }
        if let Some(completer) = self.completer.take() {
            completer.finish(self.config.shutdown_grace).await;
        }
        self.metrics.active.set(0.0);
        self.heartbeat(WorkerStatus::Offline).await;
        tracing::info!(worker = %self.config.worker_id, processed = self.report.processed, "stopped");
    }

    /// Starts claiming as many tasks as there is room for; `None` when
    /// there is none.
    fn begin_claim(&mut self) -> Option<ClaimFuture> {
        let room = (self.config.concurrency + self.ahead()).saturating_sub(self.in_hand());
        if room == 0 {
            return None;
        }
        let params = TaskClaimParams {
            worker_id: self.config.worker_id.clone(),
            max: room as u32,
            now: Utc::now(),
            lease: self.config.lease,
            queues: self.config.queues.clone(),
            key_limit: self.config.concurrency_key_limit,
            types: Some(self.types.clone()),
        };
        let store = self.store.clone();
        Some(tokio::spawn(async move {
            let asked = std::time::Instant::now();
            let claimed = store.task_claim(params).await;
            (claimed.map(|tasks| (tasks, asked.elapsed())), room)
        }))
    }

    /// Takes claimed tasks in hand and starts them while slots are free;
    /// while draining, hands them back. Whether they were taken.
    async fn claimed(&mut self, tasks: Vec<ClaimedTask>, took: Duration, draining: bool) -> bool {
        if draining {
            self.hand_back(tasks).await;
            return false;
        }
        self.prefetch.claim_took(took);
        self.metrics.claims.increment(1);
        self.metrics.claimed.increment(tasks.len() as u64);
        for task in tasks {
            if task.attempt > 1 {
                self.metrics.retries.increment(1);
            }
            self.prefetch.push(task);
        }
        self.start_waiting();
        true
    }

    /// Tasks claimed and not finished: running or waiting for a slot.
    fn in_hand(&self) -> usize {
        self.running.len() + self.prefetch.len()
    }

    /// How many tasks to hold beyond the slots ([`Prefetch::ahead`]).
    fn ahead(&self) -> usize {
        let oldest = self.aborts.values().map(|r| r.started.elapsed()).max();
        self.prefetch
            .ahead(self.config.concurrency, oldest.unwrap_or_default())
    }

    /// Starts waiting tasks while slots are free.
    fn start_waiting(&mut self) {
        while self.running.len() < self.config.concurrency {
            let Some(task) = self.prefetch.pop() else {
                break;
            };
            let running = self.start(&task);
            self.held.insert(running.abort.id(), task);
            self.aborts.insert(running.abort.id(), running);
        }
        self.metrics.active.set(self.held.len() as f64);
    }

    /// Gives tasks that never started back to the queue (their attempt is
    /// not counted); a failure leaves them to expire and be rescued.
    async fn hand_back(&mut self, tasks: Vec<ClaimedTask>) {
        if tasks.is_empty() {
            return;
        }
        let params = TaskReleaseParams {
            tasks: tasks.iter().map(|t| (t.id, t.lease_token)).collect(),
            now: Utc::now(),
        };
        if let Err(e) = self.store.task_release(params).await {
            tracing::warn!(error = %e, "handing back waiting tasks failed; their leases will expire");
        }
    }

    /// Starts one attempt under its time limit: the type's, or the
    /// submission's if lower.
    fn start(&mut self, task: &ClaimedTask) -> Running {
        let timeout = self
            .config
            .task_types
            .attempt_timeout(&task.kind, task.timeout);
        // Sealed secrets are opened for this attempt only.
        let mut input = task.input.clone();
        let opened = self.config.task_types.open_input(&mut input);
        let mut span = self.attempt_span(task);
        let trace = span.as_ref().map(|s| s.context().clone());
        let job = Job {
            id: task.id,
            task_type: task.kind.clone(),
            input,
            attempt: task.attempt,
            max_attempts: task.max_attempts,
            timeout,
            progress: Progress::default(),
            cancel: CancellationToken::new(),
            lease_token: task.lease_token,
            workflow: WorkflowSteps::new(
                self.submitter.clone(),
                task.id,
                task.lease_token,
                self.config.max_workflow_steps,
            )
            .traced(trace.as_ref()),
            trace,
        };
        let (progress, cancel) = (job.progress.clone(), job.cancel.clone());
        let handler = self.config.handlers.get(&task.kind);
        let abort = self.running.spawn(async move {
            let end = run_attempt(handler, job, opened, timeout).await;
            if let Some(mut span) = span.take() {
                match &end {
                    AttemptEnd::Succeeded(_) => {}
                    AttemptEnd::Failed { error, .. } => span.set_error(error.clone()),
                    AttemptEnd::TimedOut(after) => {
                        span.set_error(format!("timed out after {after:?}"))
                    }
                }
                span.end();
            }
            end
        });
        Running {
            abort,
            cancel,
            progress,
            started: Instant::now(),
        }
    }

    /// The span of `task`'s attempt (and its wait in the queue, recorded
    /// now), under the context its submission stored.
    fn attempt_span(&self, task: &ClaimedTask) -> Option<weir_trace::Span> {
        use weir_trace::{KeyValue, SpanKind, TraceContext};
        let parent = task.trace.as_deref().and_then(TraceContext::from_stored);
        if let Some(parent) = &parent {
            weir_trace::queue_wait(parent, task.run_at.into());
        }
        let mut span =
            weir_trace::tracer().start("task.attempt", SpanKind::Consumer, parent.as_ref())?;
        span.set_attribute(|| KeyValue::new("weir.task.id", task.id.to_string()));
        span.set_attribute(|| KeyValue::new("weir.task.type", task.kind.as_str().to_owned()));
        span.set_attribute(|| KeyValue::new("weir.task.attempt", i64::from(task.attempt)));
        span.set_attribute(|| KeyValue::new("weir.worker.id", self.config.worker_id.clone()));
        Some(span)
    }

    /// Turns a finished execution into a pending completion.
    fn finished(&mut self, joined: Result<(tokio::task::Id, AttemptEnd), tokio::task::JoinError>) {
        let (id, end) = match joined {
            Ok((id, end)) => (id, end),
            Err(e) if e.is_panic() => (e.id(), HandlerError::retryable("the task panicked").into()),
            // Cancelled: only during release, which handles the task itself.
            Err(_) => return,
        };
        if let Some(running) = self.aborts.remove(&id) {
            self.prefetch.task_took(running.started.elapsed());
        }
        let Some(task) = self.held.remove(&id) else {
            return;
        };
        self.metrics.active.set(self.held.len() as f64);
        let now = Utc::now();
        match &end {
            AttemptEnd::Succeeded(_) => {
                self.report.processed += 1;
                self.metrics.processed.increment(1);
            }
            failed => {
                self.report.failed += 1;
                self.metrics.failed.increment(1);
                tracing::info!(task = %task.id, attempt = task.attempt, end = ?failed, "attempt failed");
            }
        }
        let attempt = Attempt {
            kind: &task.kind,
            input: &task.input,
            attempt: task.attempt,
            max_attempts: task.max_attempts,
            backoff: task.backoff,
            tenant: task.tenant.as_deref(),
        };
        let defaults = AttemptDefaults {
            retry: self.config.retry,
            cache_ttl: self.config.cache_ttl,
        };
        let outcome = self.config.task_types.attempt_outcome(
            &attempt,
            end,
            &defaults,
            now,
            rand::thread_rng().gen(),
        );
        if let Some(completer) = &self.completer {
            completer.send(TaskCompletion {
                id: task.id,
                lease_token: task.lease_token,
                outcome,
                now,
            });
        }
    }

    /// Renews the leases of running tasks; stops the ones this worker no
    /// longer holds (cancelled by a user, or rescued and handed to another
    /// worker) — their results would be refused anyway.
    async fn extend_leases(&mut self) {
        if self.held.is_empty() && self.prefetch.len() == 0 {
            return;
        }
        let params = TaskLeaseExtendParams {
            worker_id: self.config.worker_id.clone(),
            tasks: self
                .held
                .values()
                .chain(self.prefetch.iter())
                .map(|t| (t.id, t.lease_token))
                .collect(),
            lease_expires_at: Utc::now() + to_chrono(self.config.lease),
            progress: self
                .held
                .iter()
                .filter_map(|(tid, t)| {
                    let p = self.aborts.get(tid)?.progress.get()?;
                    Some((t.id, p))
                })
                .collect(),
        };
        match self.store.task_lease_extend(params).await {
            Ok(still_held) => {
                self.prefetch.forget(|t| !still_held.contains(&t.id));
                let lost: Vec<tokio::task::Id> = self
                    .held
                    .iter()
                    .filter(|(_, t)| !still_held.contains(&t.id))
                    .map(|(tid, _)| *tid)
                    .collect();
                for tid in lost {
                    if let Some(task) = self.held.remove(&tid) {
                        tracing::info!(task = %task.id, "no longer held (cancelled or rescued); stopping it");
                    }
                    if let Some(running) = self.aborts.remove(&tid) {
                        running.stop();
                    }
                }
                self.metrics.active.set(self.held.len() as f64);
            }
            Err(e) => {
                tracing::warn!(worker = %self.config.worker_id, error = %e, "lease extension failed");
            }
        }
    }

    /// End of the grace period: stop what still runs and hand it back.
    async fn release_unfinished(&mut self) {
        for (_, running) in self.aborts.drain() {
            running.stop();
        }
        self.running.abort_all();
        while self.running.join_next().await.is_some() {}
        let tasks: Vec<_> = self
            .held
            .drain()
            .map(|(_, t)| (t.id, t.lease_token))
            .collect();
        if tasks.is_empty() {
            return;
        }
        let params = TaskReleaseParams {
            tasks,
            now: Utc::now(),
        };
        match self.store.task_release(params).await {
            Ok(n) => self.report.released = n,
            // The leases expire by themselves and the rescuer re-queues the tasks.
            Err(e) => {
                tracing::warn!(error = %e, "releasing tasks failed; their leases will expire")
            }
        }
    }

    async fn heartbeat(&self, status: WorkerStatus) {
        let now = Utc::now();
        let params = WorkerHeartbeatParams {
            worker_id: self.config.worker_id.clone(),
            status,
            concurrency: self.config.concurrency as i32,
            active_tasks: self.held.len() as i32,
            current_task: self.held.values().next().map(|t| t.id.to_string()),
            processed: self.report.processed,
            failed: self.report.failed,
            started_at: self.started_at,
            now,
            task_types: self.types.clone(),
        };
        match self.store.worker_heartbeat(params).await {
            Ok(()) => self
                .metrics
                .heartbeat
                .set(now.timestamp_millis() as f64 / 1000.0),
            Err(e) => {
                tracing::warn!(worker = %self.config.worker_id, error = %e, "heartbeat failed")
            }
        }
    }
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Runs one attempt: its handler under its time limit.
async fn run_attempt(
    handler: Option<Arc<dyn Handler>>,
    job: Job,
    opened: Result<(), weir_core::secrets::OpenError>,
    timeout: Duration,
) -> AttemptEnd {
    if let Err(e) = opened {
        return HandlerError::permanent(e.to_string()).into();
    }
    let Some(handler) = handler else {
        // Claims name only this worker's types; a type renamed
        // between claim and run is retried elsewhere.
        return HandlerError::retryable(format!(
            "no handler for task type {} on this worker",
            job.task_type
        ))
        .into();
    };
    // On timeout the attempt's future is dropped: an HTTP request is
    // aborted, a command's process group killed.
    match tokio::time::timeout(timeout, handler.run(job)).await {
        Ok(Ok(result)) => AttemptEnd::Succeeded(result),
        Ok(Err(error)) => error.into(),
        Err(_) => AttemptEnd::TimedOut(timeout),
    }
}
