//! Which tasks a listing or a bulk action covers, and the order a listing
//! pages through them in: one filter for both, so a bulk action over "what
//! matches" acts on exactly what the browser showed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{TaskId, TaskState, WorkflowId};

/// Every field set narrows the match; none set matches every task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TaskState>,
    /// A task type's name.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Only the steps of this workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowId>,
    /// Created at or after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before: Option<DateTime<Utc>>,
    /// Finished (succeeded, dead or cancelled) at or after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_after: Option<DateTime<Utc>>,
    /// Finished before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_before: Option<DateTime<Utc>>,
    /// Text in the last error, any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Longest text a filter's field may hold.
pub const MAX_FILTER_TEXT: usize = 200;

impl TaskFilter {
    /// The filter's own rules; the error names the field.
    pub fn check(&self) -> Result<(), String> {
        for (name, text) in [
            ("type", &self.kind),
            ("queue", &self.queue),
            ("tenant", &self.tenant),
            ("error", &self.error),
        ] {
            if let Some(text) = text {
                if text.is_empty() || text.len() > MAX_FILTER_TEXT {
                    return Err(format!(
                        "filter.{name} must be 1 to {MAX_FILTER_TEXT} bytes"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether only finished tasks can match (a finished-time bound).
    pub fn finished_only(&self) -> bool {
        self.finished_after.is_some() || self.finished_before.is_some()
    }

    /// The filter a caller of `tenant` may use: its own tenant's tasks only.
    /// `None` when it asked for another tenant's (nothing to match).
    pub fn within_tenant(mut self, tenant: Option<&str>) -> Option<Self> {
        match (tenant, &self.tenant) {
            (None, _) => Some(self),
            (Some(mine), Some(asked)) if asked != mine => None,
            (Some(mine), _) => {
                self.tenant = Some(mine.to_owned());
                Some(self)
            }
        }
    }
}

/// The order a listing pages through: newest first by creation (ids are
/// time-ordered) or by finish time (finished tasks only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskSort {
    #[default]
    Created,
    Finished,
}

/// Where the next page starts: after this task in the listing's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskCursor {
    pub id: TaskId,
    /// The task's finish time, when the listing is by finish time.
    pub finished_at: Option<DateTime<Utc>>,
}

impl TaskCursor {
    /// The opaque text a page gives out: the id, or `micros~id` by finish time.
    pub fn encode(&self) -> String {
        match self.finished_at {
            None => self.id.to_string(),
            Some(at) => format!("{}~{}", at.timestamp_micros(), self.id),
        }
    }

    /// Reads a cursor given out for `sort`.
    pub fn decode(text: &str, sort: TaskSort) -> Option<Self> {
        match sort {
            TaskSort::Created => Some(TaskCursor {
                id: text.parse().ok()?,
                finished_at: None,
            }),
            TaskSort::Finished => {
                let (micros, id) = text.split_once('~')?;
                Some(TaskCursor {
                    id: id.parse().ok()?,
                    finished_at: Some(DateTime::from_timestamp_micros(micros.parse().ok()?)?),
                })
            }
        }
    }
}

/// One page of a listing.
#[derive(Clone, Debug, Default)]
pub struct TaskListParams {
    pub filter: TaskFilter,
    pub sort: TaskSort,
    /// Only tasks after this one in `sort`'s order (the previous page's last).
    pub after: Option<TaskCursor>,
    pub limit: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_in_their_order() {
        let id = TaskId::new();
        let by_created = TaskCursor {
            id,
            finished_at: None,
        };
        assert_eq!(
            TaskCursor::decode(&by_created.encode(), TaskSort::Created),
            Some(by_created)
        );
        let at = DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap();
        let by_finished = TaskCursor {
            id,
            finished_at: Some(at),
        };
        assert_eq!(
            TaskCursor::decode(&by_finished.encode(), TaskSort::Finished),
            Some(by_finished)
        );
        assert_eq!(
            TaskCursor::decode(&id.to_string(), TaskSort::Finished),
            None
        );
        assert_eq!(TaskCursor::decode("x~y", TaskSort::Finished), None);
    }

    #[test]
    fn a_tenant_key_filters_within_its_tenant() {
        let asked = TaskFilter {
            tenant: Some("b".into()),
            ..TaskFilter::default()
        };
        assert_eq!(asked.clone().within_tenant(Some("a")), None);
        assert_eq!(
            TaskFilter::default()
                .within_tenant(Some("a"))
                .unwrap()
                .tenant,
            Some("a".into())
        );
        assert_eq!(asked.clone().within_tenant(None), Some(asked));
    }

    #[test]
    fn filter_fields_are_bounded_and_named() {
        let long = TaskFilter {
            error: Some("x".repeat(MAX_FILTER_TEXT + 1)),
            ..TaskFilter::default()
        };
        assert!(long.check().unwrap_err().contains("filter.error"));
        let json = serde_json::json!({"state": "dead", "type": "email", "nope": 1});
        let err = serde_json::from_value::<TaskFilter>(json).unwrap_err();
        assert!(err.to_string().contains("nope"));
    }
}
