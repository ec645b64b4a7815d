//! Tasks: the unit of work the queue holds.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{TaskId, TaskType};

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for `run_at` and a free worker. A worker's claim moves it to `Running`.
    Queued,
    /// Held by one worker under a lease. The worker moves it to `Succeeded`, back to
    /// `Queued` (retry, or release on drain) or to `Dead`; the rescuer moves it back to
    /// `Queued` (or `Dead`) when the lease expires.
    Running,
    /// Finished with a result. Final.
    Succeeded,
    /// Failed on its last allowed attempt; the last error is kept. Final
    /// (unless retried by hand).
    Dead,
    /// Cancelled by a user before it finished (or, as a workflow step, by
    /// its parent's failure). Final.
    Cancelled,
    /// A workflow step whose parents have not all ended: not claimable. The
    /// end of its last parent moves it to `Queued` (or `Cancelled`).
    Waiting,
}

impl TaskState {
    /// The name stored in the database and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Dead => "dead",
            TaskState::Cancelled => "cancelled",
            TaskState::Waiting => "waiting",
        }
    }

    /// Whether the task will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled
        )
    }
}

impl FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => TaskState::Queued,
            "running" => TaskState::Running,
            "succeeded" => TaskState::Succeeded,
            "dead" => TaskState::Dead,
            "cancelled" => TaskState::Cancelled,
            "waiting" => TaskState::Waiting,
            other => return Err(format!("unknown task state {other:?}")),
        })
    }
}

/// Attempts a task gets unless its submission (or, for the API's
/// submissions, `--max-attempts`) says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 3;

/// A task as the store keeps it and the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    pub id: TaskId,
    #[serde(rename = "type")]
    pub kind: TaskType,
    /// Sensitive fields are shown as `"[redacted]"`.
    #[schema(value_type = Object)]
    #[serde(serialize_with = "crate::secrets::serialize_redacted")]
    pub input: Value,
    #[serde(rename = "status")]
    pub state: TaskState,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// The last attempt's error, if it failed.
    pub error: Option<String>,
    /// Attempts started so far (a claim starts one).
    pub attempts: i32,
    pub max_attempts: i32,
    /// Higher runs first.
    pub priority: i32,
    /// The worker that ran (or runs) the latest attempt.
    pub worker_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Not claimed before this moment.
    pub run_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Every failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
    /// How far the running attempt says it is, 0-100 (100 once succeeded;
    /// absent for kinds that do not report).
    pub progress: Option<i16>,
    /// The named queue it waits in.
    pub queue: String,
    pub concurrency_key: Option<String>,
    /// The backoff given at submission (`None`: the workers' for its type).
    #[schema(value_type = Option<crate::retry::RetryPolicyJson>)]
    pub retry_backoff: Option<crate::RetryPolicy>,
    /// This task's own per-attempt time limit, if its submission lowered
    /// its type's.
    pub timeout_ms: Option<i64>,
    /// The tenant of the API key that submitted it; keys of a tenant see
    /// only its tasks.
    pub tenant: Option<String>,
    /// While it runs: when its worker's lease ends unless a heartbeat
    /// renews it (then the rescuer queues it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The workflow this task is a step of, if it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<crate::WorkflowId>,
    /// Its step's id in that workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
}

/// One failed attempt, as kept on its task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptError {
    pub attempt: i32,
    pub error: String,
    pub at: DateTime<Utc>,
    pub worker_id: Option<String>,
}

/// What a worker gets from a claim: enough to run the task and to prove, when it
/// reports back, that it still holds the lease.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedTask {
    pub id: TaskId,
    pub kind: TaskType,
    pub input: Value,
    /// This attempt's number, starting at 1.
    pub attempt: i32,
    pub max_attempts: i32,
    /// Fencing token: grows with every claim of this task. A completion carrying an
    /// older token is rejected, so a worker whose lease was lost cannot overwrite
    /// the attempt that replaced it.
    pub lease_token: i64,
    /// The task's own backoff, if its submission gave one.
    pub backoff: Option<crate::RetryPolicy>,
    /// The task's own per-attempt time limit, if its submission gave one.
    pub timeout: Option<std::time::Duration>,
    /// The submitting key's tenant: its cached result is the tenant's own.
    pub tenant: Option<String>,
    /// When it became due: its queue wait began then.
    pub run_at: chrono::DateTime<chrono::Utc>,
    /// The trace context its submission left (see `TaskInsertParams::trace`).
    pub trace: Option<String>,
}
