//! Events: JSON objects clients send in bulk to `POST /write` (logs, metrics).
//!
//! Every event carries an id — the client's `id` field when it has one, else one
//! the API node made — and is stored at most once per id, so a batch sent
//! again after a lost answer, or a buffered batch written again after a crash,
//! is not stored twice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An event on its way to the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    pub id: String,
    /// The event as the client sent it: the text of one JSON object.
    pub body: String,
    pub received_at: DateTime<Utc>,
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub id: String,
    pub received_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub event: Value,
}
