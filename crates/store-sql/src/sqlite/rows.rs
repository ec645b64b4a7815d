//! SQLite rows (`sqlx::FromRow`) and their domain types. Times are stored as
//! Unix milliseconds, JSON as text, ids as their text form.

use chrono::{DateTime, Utc};
use weir_core::{
    ClaimedTask, RetryPolicy, StoreError, Task, TaskId, TaskType, WorkerInfo, WorkerStatus,
    WorkflowId,
};
use weir_store::Claimed;

pub const TASK_COLUMNS: &str = "id, kind, input, state, result, error, attempts, max_attempts, \
    priority, worker_id, created_at, run_at, started_at, completed_at, errors, progress, queue, \
    concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms, tenant, \
    CASE WHEN state = 'running' THEN lease_expires_at END AS lease_expires_at";

pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn time(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

fn opt_time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(time).transpose()
}

pub fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

pub fn task_id(text: &str) -> Result<TaskId, StoreError> {
    text.parse().map_err(|e| corrupt("task id", e))
}

/// A task read with its workflow step's names (`step_workflow_id`,
/// `step_name`: NULL for a task that is no workflow's step).
pub(super) fn task_with_step(row: &sqlx::sqlite::SqliteRow) -> Result<Task, StoreError> {
    use sqlx::{FromRow as _, Row as _};
    let mut task = Task::try_from(TaskRow::from_row(row).map_err(super::err)?)?;
    let workflow: Option<String> = row.try_get("step_workflow_id").map_err(super::err)?;
    task.workflow_id = workflow
        .map(|w| {
            w.parse::<WorkflowId>()
                .map_err(|e| corrupt("workflow id", e))
        })
        .transpose()?;
    task.step_id = row.try_get("step_name").map_err(super::err)?;
    Ok(task)
}

from_row! { sqlx::sqlite::SqliteRow =>
pub struct TaskRow {
    id: String,
    kind: String,
    input: String,
    state: String,
    result: Option<String>,
    error: Option<String>,
    attempts: i32,
    max_attempts: i32,
    priority: i32,
    worker_id: Option<String>,
    created_at: i64,
    run_at: i64,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    errors: String,
    progress: Option<i64>,
    queue: String,
    concurrency_key: Option<String>,
    backoff_base_ms: Option<i64>,
    backoff_cap_ms: Option<i64>,
    timeout_ms: Option<i64>,
    tenant: Option<String>,
    lease_expires_at: Option<i64>,
}}

impl TryFrom<TaskRow> for Task {
    type Error = StoreError;

    fn try_from(r: TaskRow) -> Result<Task, StoreError> {
        let succeeded = r.state == "succeeded";
        Ok(Task {
            id: task_id(&r.id)?,
            kind: TaskType::from_stored(r.kind),
            input: json("input column", &r.input)?,
            state: r.state.parse().map_err(|e| corrupt("task state", e))?,
            result: r
                .result
                .as_deref()
                .map(|t| json("result column", t))
                .transpose()?,
            error: r.error,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            priority: r.priority,
            worker_id: r.worker_id,
            created_at: time(r.created_at)?,
            run_at: time(r.run_at)?,
            started_at: opt_time(r.started_at)?,
            completed_at: opt_time(r.completed_at)?,
            errors: json("errors column", &r.errors)?,
            progress: if succeeded {
                Some(100)
            } else {
                r.progress.map(|p| p.clamp(0, 100) as i16)
            },
            queue: r.queue,
            concurrency_key: r.concurrency_key,
            retry_backoff: RetryPolicy::from_millis(r.backoff_base_ms, r.backoff_cap_ms),
            timeout_ms: r.timeout_ms,
            tenant: r.tenant,
            lease_expires_at: opt_time(r.lease_expires_at)?,
            workflow_id: None,
            step_id: None,
        })
    }
}

from_row! { sqlx::sqlite::SqliteRow =>
pub struct ClaimedRow {
    id: String,
    kind: String,
    input: String,
    attempts: i32,
    max_attempts: i32,
    lease_token: i64,
    priority: i32,
    run_at: i64,
    backoff_base_ms: Option<i64>,
    backoff_cap_ms: Option<i64>,
    timeout_ms: Option<i64>,
    tenant: Option<String>,
    trace_context: Option<String>,
}}

impl TryFrom<ClaimedRow> for Claimed {
    type Error = StoreError;

    fn try_from(r: ClaimedRow) -> Result<Claimed, StoreError> {
        Ok(Claimed {
            priority: r.priority,
            task: ClaimedTask {
                id: task_id(&r.id)?,
                kind: TaskType::from_stored(r.kind),
                input: json("input column", &r.input)?,
                attempt: r.attempts,
                max_attempts: r.max_attempts,
                lease_token: r.lease_token,
                backoff: RetryPolicy::from_millis(r.backoff_base_ms, r.backoff_cap_ms),
                timeout: r
                    .timeout_ms
                    .map(|ms| std::time::Duration::from_millis(ms.max(1) as u64)),
                tenant: r.tenant,
                run_at: time(r.run_at)?,
                trace: r.trace_context,
            },
        })
    }
}

from_row! { sqlx::sqlite::SqliteRow =>
pub struct WorkerRow {
    id: String,
    status: String,
    concurrency: i32,
    active_tasks: i32,
    current_task: Option<String>,
    processed: i64,
    failed: i64,
    started_at: i64,
    last_heartbeat_at: i64,
    task_types: String,
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
            started_at: time(r.started_at)?,
            last_heartbeat_at: time(r.last_heartbeat_at)?,
            task_types: json("task_types column", &r.task_types)?,
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
