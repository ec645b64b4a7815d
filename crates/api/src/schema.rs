//! The API's JSON answers as types: what handlers send is what the OpenAPI
//! spec (`GET /openapi.json`) describes, because both come from these.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use weir_core::{
    CacheEntryStats, FinishedCounts, StoredEvent, Task, TaskId, TaskState, TaskType, WorkerInfo,
};

/// `{"error":{"code","message"}}`: every 4xx and 5xx answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable (`invalid_json`, `task_not_found`, …).
    pub code: String,
    /// For people.
    pub message: String,
}

/// A submission's answer: the task that stands for it.
#[derive(Serialize, ToSchema)]
pub struct TaskAccepted {
    pub task_id: TaskId,
    pub status: TaskState,
    #[serde(rename = "type")]
    pub kind: TaskType,
    /// Present (true) when an equal cacheable task was already queued or
    /// running and this submission was folded into it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deduplicated: Option<bool>,
}

/// A cacheable submission answered from the shared cache.
#[derive(Serialize, ToSchema)]
pub struct CachedResult {
    #[serde(rename = "type")]
    pub kind: TaskType,
    #[schema(value_type = Object)]
    pub result: Value,
    /// Always `cache`.
    pub source: &'static str,
}

/// One page of `GET /tasks`.
#[derive(Serialize, ToSchema)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// `GET /tasks/stats`.
#[derive(Serialize, ToSchema)]
pub struct TaskStats {
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub dead: i64,
    pub cancelled: i64,
    /// Workflow steps waiting for their parents.
    pub waiting: i64,
    /// Workflows by status (`running`, `succeeded`, `failed`, `cancelled`).
    pub workflows: std::collections::BTreeMap<String, i64>,
    pub queues: Vec<QueueStats>,
    /// Tasks that finished in the last 60 seconds: the recent throughput.
    pub finished_last_minute: FinishedCounts,
    /// Queued tasks per type (types with queued tasks only).
    pub queued_by_type: std::collections::BTreeMap<String, i64>,
}

/// One named queue in `GET /tasks/stats`.
#[derive(Serialize, ToSchema)]
pub struct QueueStats {
    pub name: String,
    pub queued: i64,
    pub running: i64,
    /// When its longest-waiting queued task came due (or will).
    pub oldest_queued_at: Option<chrono::DateTime<chrono::Utc>>,
    /// No worker claims from it until it is resumed.
    pub paused: bool,
    /// Most running at once across the cluster, if limited.
    pub concurrency: Option<i32>,
    /// Most started per second across the cluster, if limited.
    pub rate_per_second: Option<f64>,
    /// Starts the rate allows at once.
    pub burst: Option<i32>,
    /// Its tasks that succeeded in the last minute.
    pub succeeded_last_minute: i64,
}

impl QueueStats {
    /// A queue without tasks, limits or a pause.
    pub fn empty(name: &str) -> QueueStats {
        QueueStats {
            name: name.to_string(),
            queued: 0,
            running: 0,
            oldest_queued_at: None,
            paused: false,
            concurrency: None,
            rate_per_second: None,
            burst: None,
            succeeded_last_minute: 0,
        }
    }
}

/// `GET /workers`.
#[derive(Serialize, ToSchema)]
pub struct WorkerList {
    pub workers: Vec<WorkerInfo>,
}

/// `GET /cache/stats`.
#[derive(Serialize, ToSchema)]
pub struct CacheStatsView {
    pub entries: i64,
    pub hits: i64,
    pub misses: i64,
    /// hits / (hits + misses); absent before the first lookup.
    pub hit_ratio: Option<f64>,
    /// The most read entries.
    pub top: Vec<CacheEntryStats>,
}

/// `POST /write`'s answer.
#[derive(Serialize, ToSchema)]
pub struct EventsAccepted {
    /// Events in the request (resent ones included; each is stored once).
    pub accepted: usize,
}

/// `GET /messages`.
#[derive(Serialize, ToSchema)]
pub struct Messages {
    pub messages: Vec<StoredEvent>,
}

/// `GET /messages/count`.
#[derive(Serialize, ToSchema)]
pub struct MessageCount {
    pub count: i64,
}

/// `GET /health/live` and `GET /health/ready` when they pass.
#[derive(Serialize, ToSchema)]
pub struct Probe {
    /// `live` or `ready`.
    pub status: &'static str,
    pub node_id: String,
}

/// `GET /health`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the node answers.
    pub status: &'static str,
    pub node_id: String,
    /// `sqlite` or `postgres`.
    pub store: String,
}

/// A 200 to a submission: the task that stands for it, or the cached result.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SubmitAnswer {
    Task(TaskAccepted),
    Cached(CachedResult),
}
