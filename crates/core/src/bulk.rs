//! Bulk actions: retry, cancel or delete many tasks with one request, run by
//! the store in bounded batches that survive a restart.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{BulkId, TaskFilter, TaskId, TaskState};

/// What a bulk action does to each task it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// Dead tasks queued again with fresh attempts.
    Retry,
    /// Waiting, queued and running tasks cancelled (running ones fenced off).
    Cancel,
    /// Finished tasks deleted (a workflow's steps stay while it does).
    Delete,
}

impl BulkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Retry => "retry",
            BulkAction::Cancel => "cancel",
            BulkAction::Delete => "delete",
        }
    }

    /// The states of the tasks it can change.
    pub fn acts_on(self) -> &'static [TaskState] {
        match self {
            BulkAction::Retry => &[TaskState::Dead],
            BulkAction::Cancel => &[TaskState::Waiting, TaskState::Queued, TaskState::Running],
            BulkAction::Delete => &[TaskState::Succeeded, TaskState::Dead, TaskState::Cancelled],
        }
    }
}

impl std::str::FromStr for BulkAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "retry" => BulkAction::Retry,
            "cancel" => BulkAction::Cancel,
            "delete" => BulkAction::Delete,
            other => return Err(format!("unknown bulk action {other:?}")),
        })
    }
}

/// A bulk action to start: over `ids`, or (without) every task `filter`
/// matches that was created before it.
#[derive(Clone, Debug)]
pub struct NewBulk {
    pub id: BulkId,
    pub action: BulkAction,
    pub ids: Option<Vec<TaskId>>,
    /// With `ids`, only its tenant counts (the caller's).
    pub filter: TaskFilter,
    /// Who asked: an API key's name, or `admin` when keys are off.
    pub actor: String,
    pub created_at: DateTime<Utc>,
}

/// A bulk action and how far it has come.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BulkJob {
    pub id: BulkId,
    pub action: BulkAction,
    /// `running` until every covered task has been looked at, then `done`.
    pub status: String,
    /// How many ids it was given (absent: it covers a filter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ids: Option<i64>,
    pub filter: TaskFilter,
    /// Tasks looked at so far.
    pub processed: i64,
    /// Tasks it changed.
    pub changed: i64,
    /// Tasks looked at but left as they were (not in a state it acts on,
    /// or another tenant's).
    pub skipped: i64,
    pub actor: String,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

impl BulkJob {
    pub fn is_done(&self) -> bool {
        self.status == "done"
    }
}
