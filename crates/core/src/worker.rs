//! A worker's row in the registry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a worker says it is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Claiming and running tasks.
    Online,
    /// Finishing what it runs; claims nothing new.
    Draining,
    /// Stopped, or silent for longer than the heartbeat allows.
    Offline,
}

impl WorkerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Online => "online",
            WorkerStatus::Draining => "draining",
            WorkerStatus::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "online" => WorkerStatus::Online,
            "draining" => WorkerStatus::Draining,
            _ => WorkerStatus::Offline,
        }
    }
}

/// One worker as `GET /workers` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerInfo {
    pub id: String,
    pub status: WorkerStatus,
    /// Tasks it may run at once.
    pub concurrency: i32,
    /// Tasks it runs now.
    pub active_tasks: i32,
    /// One of the tasks it runs now.
    pub current_task: Option<String>,
    pub processed: i64,
    pub failed: i64,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat_at: DateTime<Utc>,
    /// The task types it runs (empty: not reported, e.g. an older worker).
    #[serde(default)]
    pub task_types: Vec<String>,
}
