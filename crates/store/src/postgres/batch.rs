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
pub(super) const COMPLETE_MANY: &str = "\
WITH c AS (
    SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::jsonb[], $5::text[],
                         $6::timestamptz[], $7::timestamptz[])
        AS c(id, token, state, result, error, run_at, now)
),
finished AS (
    DELETE FROM tasks t USING c
    WHERE t.id = c.id AND t.lease_token = c.token AND t.state = 'running'
      AND c.state IN ('succeeded', 'dead')
    RETURNING t.id, t.kind, t.input, c.state, c.result, c.error, t.attempts, t.max_attempts,
              t.priority, t.worker_id, t.created_at, t.run_at, t.started_at, c.now,
              t.queue, t.concurrency_key, t.backoff_base_ms, t.backoff_cap_ms, t.timeout_ms,
              CASE WHEN c.state = 'dead'
                   THEN t.errors || jsonb_build_array(jsonb_build_object('attempt', t.attempts,
                            'error', c.error, 'at', c.now, 'worker_id', t.worker_id))
                   ELSE t.errors END AS errors
),
archived AS (
    INSERT INTO tasks_finished (id, kind, input, state, result, error, attempts, max_attempts,
                                priority, worker_id, created_at, run_at, started_at, completed_at,
                                queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms,
                                errors)
    SELECT * FROM finished
    RETURNING id
),
cached AS (
    INSERT INTO cache (key, value, created_at, expires_at)
    SELECT k.key, f.result, f.now, k.expires_at
    FROM unnest($8::text[], $9::uuid[], $10::timestamptz[]) AS k(key, id, expires_at)
    JOIN finished f ON f.id = k.id
    ON CONFLICT (key) DO UPDATE
        SET value = excluded.value, created_at = excluded.created_at, expires_at = excluded.expires_at
),
retried AS (
    UPDATE tasks t SET state = 'queued', error = c.error, run_at = c.run_at,
                       lease_expires_at = NULL,
                       errors = t.errors || jsonb_build_array(jsonb_build_object('attempt', t.attempts,
                           'error', c.error, 'at', c.now, 'worker_id', t.worker_id))
    FROM c
    WHERE t.id = c.id AND t.lease_token = c.token AND t.state = 'running' AND c.state = 'queued'
    RETURNING t.id
)
SELECT id FROM archived UNION ALL SELECT id FROM retried";
