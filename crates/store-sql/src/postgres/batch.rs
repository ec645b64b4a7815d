//! The queue's batched statements: claiming and completing many tasks in one
//! round trip each.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Executor, Postgres};
use uuid::Uuid;
use weir_core::{StoreError, TaskCompletion, TaskId, TaskOutcome};
use weir_store::{AppliedCompletion, CompletedOutside};

use super::claim_hint::ClaimHints;
use super::err;

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

/// Records a batch of outcomes in one statement (see its header).
const COMPLETE_MANY: &str = include_str!("sql/complete_many.sql");

/// Runs the completion statement on `exec`. With `steps_too` false a
/// workflow step's end is left for [`CompletedOutside::steps_left`]: then
/// the statement needs no transaction around it, as a step's end needs its
/// workflow's bookkeeping in the same one.
pub(super) async fn complete_many<'e>(
    exec: impl Executor<'e, Database = Postgres>,
    hints: &ClaimHints,
    completions: &[TaskCompletion],
    steps_too: bool,
) -> Result<CompletedOutside, StoreError> {
    let a = CompletionArrays::new(completions);
    if a.states.contains(&"queued") {
        // Retries go back at a later run_at but perhaps a higher priority.
        hints.forget_all();
    }
    let (mut cache_keys, mut cache_ids, mut cache_expiry) = (Vec::new(), Vec::new(), Vec::new());
    for (key, (id, expires_at)) in a.cache {
        cache_keys.push(key);
        cache_ids.push(id);
        cache_expiry.push(expires_at);
    }
    let rows: Vec<(Uuid, String, bool, bool)> = sqlx::query_as(COMPLETE_MANY)
        .bind(&a.ids)
        .bind(&a.tokens)
        .bind(&a.states)
        .bind(&a.results)
        .bind(&a.errors)
        .bind(&a.run_ats)
        .bind(&a.nows)
        .bind(cache_keys)
        .bind(cache_ids)
        .bind(cache_expiry)
        .bind(steps_too)
        .fetch_all(exec)
        .await
        .map_err(err)?;
    let mut done = CompletedOutside {
        applied: Vec::with_capacity(rows.len()),
        steps_left: Vec::new(),
    };
    for (id, state, step, limited) in rows {
        let ended = match state.as_str() {
            "step" => {
                done.steps_left.push(TaskId(id));
                continue;
            }
            "queued" => None,
            other => Some(other.parse().map_err(StoreError::Corrupt)?),
        };
        done.applied.push(AppliedCompletion {
            id: TaskId(id),
            ended,
            maybe_step: step,
            limited,
        });
    }
    Ok(done)
}
