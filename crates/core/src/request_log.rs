//! The request log: one row per HTTP request an API node answered.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One logged request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLogEntry {
    pub node_id: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The `message` query parameter of `GET /`, if any.
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Requests logged per API node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestLogStats {
    pub total: i64,
    /// node id → requests logged by it.
    pub nodes: BTreeMap<String, i64>,
}

/// One node's count, as a backend returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRequestCount {
    pub node_id: String,
    pub count: i64,
}

impl FromIterator<NodeRequestCount> for RequestLogStats {
    fn from_iter<I: IntoIterator<Item = NodeRequestCount>>(iter: I) -> Self {
        let mut stats = RequestLogStats::default();
        for row in iter {
            stats.total += row.count;
            stats.nodes.insert(row.node_id, row.count);
        }
        stats
    }
}
