//! Queueing tasks on PostgreSQL: one statement for a whole batch, idempotent
//! by id, and de-duplicated by input for cacheable kinds — `tasks` holds only
//! queued and running tasks, and `cache_key` is unique in it, so a
//! submission whose result is already being computed is folded into the task
//! computing it (`ON CONFLICT DO NOTHING`, then a lookup for the folded ones).

use std::collections::{HashMap, HashSet};

use sqlx::Row;
use uuid::Uuid;
use weir_core::{RetryPolicy, Store, StoreError, Task, TaskId, TaskInsertParams};

use super::{err, PostgresStore};

/// How often a folded submission is tried again when the task it matched
/// finished between the insert and the lookup.
const FOLD_ATTEMPTS: usize = 3;

impl PostgresStore {
    pub(super) async fn insert_one(&self, p: TaskInsertParams) -> Result<Task, StoreError> {
        let ids = self.insert_many(std::slice::from_ref(&p)).await?;
        let id = ids.first().copied().unwrap_or(p.id);
        self.task_get(id)
            .await?
            .ok_or_else(|| StoreError::Internal(format!("task {id} vanished on insert")))
    }

    pub(super) async fn insert_many(
        &self,
        params: &[TaskInsertParams],
    ) -> Result<Vec<TaskId>, StoreError> {
        let mut answers: Vec<Option<TaskId>> = vec![None; params.len()];
        let mut pending: Vec<usize> = (0..params.len()).collect();
        for _ in 0..FOLD_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            let batch: Vec<&TaskInsertParams> = pending.iter().map(|&i| &params[i]).collect();
            let inserted: HashSet<Uuid> = self.insert_rows(&batch).await?.into_iter().collect();
            // The rest were folded (same input queued or running) or are
            // already there (same id): find what stands for each.
            let rest: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|&i| !inserted.contains(&params[i].id.0))
                .collect();
            for &i in &pending {
                if inserted.contains(&params[i].id.0) {
                    answers[i] = Some(params[i].id);
                }
            }
            let found = self
                .standing_for(&rest.iter().map(|&i| &params[i]).collect::<Vec<_>>())
                .await?;
            pending = Vec::new();
            for i in rest {
                match found.stand_in(&params[i]) {
                    Some(id) => answers[i] = Some(TaskId(id)),
                    None => pending.push(i),
                }
            }
        }
        if !pending.is_empty() {
            return Err(StoreError::Unavailable(
                "a submission kept matching tasks that finished; retry".into(),
            ));
        }
        self.wake_workers();
        Ok(answers.into_iter().map(|a| a.unwrap_or_default()).collect())
    }

    /// Inserts what it can; returns the ids inserted.
    async fn insert_rows(&self, params: &[&TaskInsertParams]) -> Result<Vec<Uuid>, StoreError> {
        let n = params.len();
        let mut ids = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut inputs = Vec::with_capacity(n);
        let mut attempts = Vec::with_capacity(n);
        let mut priorities = Vec::with_capacity(n);
        let mut cache_keys = Vec::with_capacity(n);
        let mut created = Vec::with_capacity(n);
        let mut run_at = Vec::with_capacity(n);
        let mut queues = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        let mut bases = Vec::with_capacity(n);
        let mut caps = Vec::with_capacity(n);
        let mut timeouts = Vec::with_capacity(n);
        for p in params {
            ids.push(p.id.0);
            kinds.push(p.kind.as_str());
            inputs.push(&p.input);
            attempts.push(p.max_attempts);
            priorities.push(p.priority);
            cache_keys.push(p.cache_key.as_deref());
            created.push(p.now);
            run_at.push(p.run_at);
            queues.push(p.queue.as_str());
            keys.push(p.concurrency_key.as_deref());
            let (base, cap) = RetryPolicy::to_millis(p.backoff);
            bases.push(base);
            caps.push(cap);
            timeouts.push(p.timeout.map(|t| t.as_millis() as i64));
        }
        sqlx::query_scalar(
            "INSERT INTO tasks (id, kind, input, state, max_attempts, priority, cache_key, \
                                created_at, run_at, queue, concurrency_key, backoff_base_ms, \
                                backoff_cap_ms, timeout_ms) \
             SELECT id, kind, input, 'queued', max_attempts, priority, cache_key, created_at, run_at, \
                    queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms \
             FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::int[], $5::int[], $6::text[], \
                         $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], \
                         $11::bigint[], $12::bigint[], $13::bigint[]) \
                 AS t(id, kind, input, max_attempts, priority, cache_key, created_at, run_at, \
                      queue, concurrency_key, backoff_base_ms, backoff_cap_ms, timeout_ms) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(ids)
        .bind(kinds)
        .bind(inputs)
        .bind(attempts)
        .bind(priorities)
        .bind(cache_keys)
        .bind(created)
        .bind(run_at)
        .bind(queues)
        .bind(keys)
        .bind(bases)
        .bind(caps)
        .bind(timeouts)
        .fetch_all(&self.pool)
        .await
        .map_err(err)
    }

    /// The live tasks with these ids or these cache keys.
    async fn standing_for(&self, params: &[&TaskInsertParams]) -> Result<Standing, StoreError> {
        if params.is_empty() {
            return Ok(Standing::default());
        }
        let ids: Vec<Uuid> = params.iter().map(|p| p.id.0).collect();
        let keys: Vec<&str> = params
            .iter()
            .filter_map(|p| p.cache_key.as_deref())
            .collect();
        let rows = sqlx::query(
            "SELECT id, cache_key FROM tasks WHERE id = ANY($1) OR cache_key = ANY($2)",
        )
        .bind(ids)
        .bind(keys)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        let mut s = Standing::default();
        for r in rows {
            let id: Uuid = r.try_get(0).map_err(err)?;
            let key: Option<String> = r.try_get(1).map_err(err)?;
            s.ids.insert(id);
            if let Some(k) = key {
                s.by_key.insert(k, id);
            }
        }
        Ok(s)
    }
}

/// Live tasks found for submissions that were not inserted.
#[derive(Default)]
struct Standing {
    ids: HashSet<Uuid>,
    by_key: HashMap<String, Uuid>,
}

impl Standing {
    /// The task standing for `p`: itself (a resend), or the live task with
    /// its input.
    fn stand_in(&self, p: &TaskInsertParams) -> Option<Uuid> {
        if self.ids.contains(&p.id.0) {
            return Some(p.id.0);
        }
        p.cache_key
            .as_ref()
            .and_then(|k| self.by_key.get(k).copied())
    }
}
