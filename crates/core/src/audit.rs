//! The audit log: who changed what, when — every manage and admin action.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One recorded action. Never holds a secret: an actor is a key's name,
/// never the key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Increasing; 0 before it is stored.
    pub id: i64,
    pub at: DateTime<Utc>,
    /// An API key's name, or `admin` when the API has no keys.
    pub actor: String,
    /// The key's tenant, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The client's address (the first `X-Forwarded-For` hop behind a proxy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// e.g. `task.retry`, `tasks.bulk`, `queue.pause`.
    pub action: String,
    /// What it acted on: a task, queue or workflow id, or a bulk action's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The filter, limits or ids it was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
    /// How many tasks it covered, where that is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
}

/// Which entries to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditListParams {
    /// Only entries older than this id (the previous page's last).
    pub before: Option<i64>,
    /// Only this action.
    pub action: Option<String>,
    pub limit: i64,
}
