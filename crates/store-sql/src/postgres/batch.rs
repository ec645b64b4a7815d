//! The queue's batched statements: claiming and completing many tasks in one
//! round trip each.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;
use weir_core::{TaskCompletion, TaskOutcome};

/// One batch of completions, as the arrays the completion statement unnests.
#[derive(Default)]
pub(super) struct CompletionArrays {
    pub(super) ids: Vec<Uuid>,
    pub(super) tokens: Vec<i64>,
    pub(super) states: Vec<&'static str>,
    pub(super) results: Vec<Option<Value>>,
    pub(super) errors: Vec<Option<String>>,
    pub(super) run_ats: Vec<Option<DateTime<Utc>>>,
    pub(super) nows: Vec<DateTime<Utc>>,
    /// Cache writes, one per key (the last wins), joined to applied successes.
    pub(super) cache: BTreeMap<String, (Uuid, DateTime<Utc>)>,
}

impl CompletionArrays {
    pub(super) fn new(completions: &[TaskCompletion]) -> Self {
        let mut a = CompletionArrays::default();
        for c in completions {
            a.ids.push(c.id.0);
            a.tokens.push(c.lease_token);
            a.nows.push(c.now);
            match &c.outcome {
                TaskOutcome::Succeeded { result, cache } => {
                    a.states.push("succeeded");
                    a.results.push(Some(result.clone()));
                    a.errors.push(None);
                    a.run_ats.push(None);
                    if let Some(cache) = cache {
                        a.cache
                            .insert(cache.key.clone(), (c.id.0, cache.expires_at));
                    }
                }
                TaskOutcome::Failed { error, retry_at } => {
                    a.states
                        .push(if retry_at.is_some() { "queued" } else { "dead" });
                    a.results.push(None);
                    a.errors.push(Some(error.clone()));
                    a.run_ats.push(*retry_at);
                }
            }
        }
        a
    }
}

/// Records a batch of outcomes in one statement. Finished tasks move to
/// `tasks_finished` (and successes with a cache key into `cache`); retries stay
/// queued with their new `run_at`. Every row is fenced by its lease token.
/// Returns the ids that were applied.
pub(super) const COMPLETE_MANY: &str = include_str!("sql/complete_many.sql");
