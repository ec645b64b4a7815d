//! PostgreSQL rows (`sqlx::FromRow`) and their domain types.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;
use weir_core::{
    ClaimedTask, RetryPolicy, StoreError, Task, TaskId, TaskType, WorkerInfo, WorkerStatus,
    WorkflowId,
};
use weir_store::Claimed;

/// What a task read takes from `tasks`: the live side has no result or
/// completion time, so it selects NULLs for them.
pub const LIVE_TASK_COLUMNS: &str = "id, kind, input, state, NULL::jsonb AS result, error, attempts, \
    max_attempts, priority, worker_id, created_at, run_at, started_at, NULL::timestamptz AS completed_at, errors, progress, \
    queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms, tenant, \
    CASE WHEN state = 'running' THEN lease_expires_at END AS lease_expires_at";
/// What a task read takes from `tasks_finished` (no progress kept there).
pub const FINISHED_TASK_COLUMNS: &str = "id, kind, input, state, result, error, attempts, \
    max_attempts, priority, worker_id, created_at, run_at, started_at, completed_at, errors, \
    NULL::smallint AS progress, queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms, tenant, \
    NULL::timestamptz AS lease_expires_at";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

from_row! { sqlx::postgres::PgRow =>
pub struct TaskRow {
    id: Uuid,
    kind: String,
    input: Value,
    state: String,
    result: Option<Value>,
    error: Option<String>,
    attempts: i32,
    max_attempts: i32,
    priority: i32,
    worker_id: Option<String>,
    created_at: DateTime<Utc>,
    run_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    errors: Value,
    progress: Option<i16>,
    queue: String,
    concurrency_key: Option<String>,
    backoff_base_ms: Option<i64>,
    backoff_cap_ms: Option<i64>,
    timeout_ms: Option<i64>,
    tenant: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
}}

impl TryFrom<TaskRow> for Task {
    type Error = StoreError;

    fn try_from(r: TaskRow) -> Result<Task, StoreError> {
        let succeeded = r.state == "succeeded";
        Ok(Task {
            id: TaskId(r.id),
            kind: TaskType::from_stored(r.kind),
            input: r.input,
            state: r.state.parse().map_err(|e| corrupt("task state", e))?,
            result: r.result,
            error: r.error,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            priority: r.priority,
            worker_id: r.worker_id,
            created_at: r.created_at,
            run_at: r.run_at,
            started_at: r.started_at,
            completed_at: r.completed_at,
            errors: serde_json::from_value(r.errors).map_err(|e| corrupt("errors column", e))?,
            progress: if succeeded { Some(100) } else { r.progress },
            queue: r.queue,
            concurrency_key: r.concurrency_key,
            retry_backoff: RetryPolicy::from_millis(r.backoff_base_ms, r.backoff_cap_ms),
            timeout_ms: r.timeout_ms,
            tenant: r.tenant,
            lease_expires_at: r.lease_expires_at,
            workflow_id: None,
            step_id: None,
        })
    }
}

/// A task read with its workflow step's names (`step_workflow_id`,
/// `step_name`: NULL for a task that is no workflow's step).
pub(super) fn task_with_step(row: &sqlx::postgres::PgRow) -> Result<Task, StoreError> {
    use sqlx::{FromRow as _, Row as _};
    let mut task = Task::try_from(TaskRow::from_row(row).map_err(super::err)?)?;
    let workflow: Option<Uuid> = row.try_get("step_workflow_id").map_err(super::err)?;
    task.workflow_id = workflow.map(WorkflowId);
    task.step_id = row.try_get("step_name").map_err(super::err)?;
    Ok(task)
}

from_row! { sqlx::postgres::PgRow =>
pub struct ClaimedRow {
    id: Uuid,
    kind: String,
    input: Value,
    attempts: i32,
    max_attempts: i32,
    lease_token: i64,
    priority: i32,
    run_at: DateTime<Utc>,
    backoff_base_ms: Option<i64>,
    backoff_cap_ms: Option<i64>,
    timeout_ms: Option<i64>,
    tenant: Option<String>,
    trace_context: Option<String>,
}}

impl ClaimedRow {
    /// Where this row sat in `tasks_claim`.
    pub(super) fn claim_key(&self) -> super::claim_hint::ClaimKey {
        super::claim_hint::ClaimKey {
            priority: self.priority,
            run_at: self.run_at,
            id: self.id,
        }
    }
}

impl TryFrom<ClaimedRow> for Claimed {
    type Error = StoreError;

    fn try_from(r: ClaimedRow) -> Result<Claimed, StoreError> {
        Ok(Claimed {
            priority: r.priority,
            task: ClaimedTask {
                id: TaskId(r.id),
                kind: TaskType::from_stored(r.kind),
                input: r.input,
                attempt: r.attempts,
                max_attempts: r.max_attempts,
                lease_token: r.lease_token,
                backoff: RetryPolicy::from_millis(r.backoff_base_ms, r.backoff_cap_ms),
                timeout: r
                    .timeout_ms
                    .map(|ms| std::time::Duration::from_millis(ms.max(1) as u64)),
                tenant: r.tenant,
                run_at: r.run_at,
                trace: r.trace_context,
            },
        })
    }
}

from_row! { sqlx::postgres::PgRow =>
pub struct WorkerRow {
    id: String,
    status: String,
    concurrency: i32,
    active_tasks: i32,
    current_task: Option<String>,
    processed: i64,
    failed: i64,
    started_at: DateTime<Utc>,
    last_heartbeat_at: DateTime<Utc>,
    task_types: Value,
}}

impl TryFrom<WorkerRow> for WorkerInfo {
    type Error = StoreError;

    fn try_from(r: WorkerRow) -> Result<WorkerInfo, StoreError> {
        Ok(WorkerInfo {
            id: r.id,
            status: WorkerStatus::parse(&r.status),
            concurrency: r.concurrency,
            active_tasks: r.active_tasks,
            current_task: r.current_task,
            processed: r.processed,
            failed: r.failed,
            started_at: r.started_at,
            last_heartbeat_at: r.last_heartbeat_at,
            task_types: serde_json::from_value(r.task_types)
                .map_err(|e| corrupt("task_types column", e))?,
        })
    }
}

/// Decodes rows into a domain type.
pub fn decode<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}
