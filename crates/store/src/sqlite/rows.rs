//! Reading SQLite rows back into domain types.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use weir_core::{
    ClaimedTask, RetryPolicy, StoreError, Task, TaskId, TaskType, WorkerInfo, WorkerStatus,
};

use super::err;

pub const TASK_COLUMNS: &str = "id, kind, input, state, result, error, attempts, max_attempts, \
    priority, worker_id, created_at, run_at, started_at, completed_at, errors, progress, queue, \
    concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms";

pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn time(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

fn opt_time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(time).transpose()
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn json(text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt("json column", e))
}

fn id(row: &SqliteRow) -> Result<TaskId, StoreError> {
    let s: String = row.try_get("id").map_err(err)?;
    s.parse().map_err(|e| corrupt("task id", e))
}

fn backoff(row: &SqliteRow) -> Result<Option<RetryPolicy>, StoreError> {
    Ok(RetryPolicy::from_millis(
        row.try_get("backoff_base_ms").map_err(err)?,
        row.try_get("backoff_cap_ms").map_err(err)?,
    ))
}

pub fn task_from_row(row: &SqliteRow) -> Result<Task, StoreError> {
    let kind: String = row.try_get("kind").map_err(err)?;
    let state: String = row.try_get("state").map_err(err)?;
    let input: String = row.try_get("input").map_err(err)?;
    let result: Option<String> = row.try_get("result").map_err(err)?;
    Ok(Task {
        id: id(row)?,
        kind: TaskType::from_stored(kind),
        input: json(&input)?,
        state: state.parse().map_err(|e| corrupt("task state", e))?,
        result: result.as_deref().map(json).transpose()?,
        error: row.try_get("error").map_err(err)?,
        attempts: row.try_get("attempts").map_err(err)?,
        max_attempts: row.try_get("max_attempts").map_err(err)?,
        priority: row.try_get("priority").map_err(err)?,
        worker_id: row.try_get("worker_id").map_err(err)?,
        created_at: time(row.try_get("created_at").map_err(err)?)?,
        run_at: time(row.try_get("run_at").map_err(err)?)?,
        started_at: opt_time(row.try_get("started_at").map_err(err)?)?,
        completed_at: opt_time(row.try_get("completed_at").map_err(err)?)?,
        errors: {
            let text: String = row.try_get("errors").map_err(err)?;
            serde_json::from_str(&text).map_err(|e| corrupt("errors column", e))?
        },
        progress: if state == "succeeded" {
            Some(100)
        } else {
            row.try_get::<Option<i64>, _>("progress")
                .map_err(err)?
                .map(|p| p.clamp(0, 100) as i16)
        },
        queue: row.try_get("queue").map_err(err)?,
        concurrency_key: row.try_get("concurrency_key").map_err(err)?,
        retry_backoff: backoff(row)?,
        timeout_ms: row.try_get("timeout_ms").map_err(err)?,
    })
}

pub fn claimed_from_row(row: &SqliteRow) -> Result<ClaimedTask, StoreError> {
    let kind: String = row.try_get("kind").map_err(err)?;
    let input: String = row.try_get("input").map_err(err)?;
    Ok(ClaimedTask {
        id: id(row)?,
        kind: TaskType::from_stored(kind),
        input: json(&input)?,
        attempt: row.try_get("attempts").map_err(err)?,
        max_attempts: row.try_get("max_attempts").map_err(err)?,
        lease_token: row.try_get("lease_token").map_err(err)?,
        backoff: backoff(row)?,
        timeout: row
            .try_get::<Option<i64>, _>("timeout_ms")
            .map_err(err)?
            .map(|ms| std::time::Duration::from_millis(ms.max(1) as u64)),
    })
}

pub fn worker_from_row(row: &SqliteRow) -> Result<WorkerInfo, StoreError> {
    let status: String = row.try_get("status").map_err(err)?;
    Ok(WorkerInfo {
        id: row.try_get("id").map_err(err)?,
        status: WorkerStatus::parse(&status),
        concurrency: row.try_get("concurrency").map_err(err)?,
        active_tasks: row.try_get("active_tasks").map_err(err)?,
        current_task: row.try_get("current_task").map_err(err)?,
        processed: row.try_get("processed").map_err(err)?,
        failed: row.try_get("failed").map_err(err)?,
        started_at: time(row.try_get("started_at").map_err(err)?)?,
        last_heartbeat_at: time(row.try_get("last_heartbeat_at").map_err(err)?)?,
        task_types: {
            let text: String = row.try_get("task_types").map_err(err)?;
            serde_json::from_str(&text).map_err(|e| corrupt("task_types column", e))?
        },
    })
}
