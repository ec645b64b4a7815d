//! Queueing tasks: idempotent by id, folded by input, and under idempotency keys.
//!
//! A submission not inserted stands for a task already stored: itself (a
//! resend of the same id, even one finished since), or the live task with the
//! same cache key (its result is being computed: the submission is folded
//! into it) — or, when answered from the cache, the result cached for its
//! key. Between the insert and the lookup that live task may finish; the
//! submission is then tried again, a few times, before the caller is told
//! to retry.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use weir_core::{IdempotencyKey, Queued, StoreError, Task, TaskId, TaskInsertParams};

use super::SqlStore;
use crate::driver::StandingTask;

/// How often a folded submission is tried again when the task it matched
/// finished between the insert and the lookup.
const FOLD_ATTEMPTS: usize = 3;

impl SqlStore {
    pub(super) async fn insert_one(&self, p: &TaskInsertParams) -> Result<Task, StoreError> {
        let id = match self
            .insert_many(std::slice::from_ref(p), false)
            .await?
            .first()
        {
            Some(Queued::Task(id)) => *id,
            _ => p.id,
        };
        self.driver()
            .task_get(id)
            .await?
            .ok_or_else(|| StoreError::Unavailable(format!("task {id} finished meanwhile; retry")))
    }

    /// Queues `params`; with `from_cache`, a submission whose result is
    /// cached is answered with it instead.
    pub(super) async fn insert_many(
        &self,
        params: &[TaskInsertParams],
        from_cache: bool,
    ) -> Result<Vec<Queued>, StoreError> {
        let mut answers: Vec<Option<Queued>> = vec![None; params.len()];
        let mut pending: Vec<usize> = (0..params.len()).collect();
        for _ in 0..FOLD_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            let batch: Vec<&TaskInsertParams> = pending.iter().map(|&i| &params[i]).collect();
            let inserted: HashSet<TaskId> = self
                .driver()
                .task_insert_rows(&batch, from_cache)
                .await?
                .into_iter()
                .collect();
            let (done, rest): (Vec<usize>, Vec<usize>) = pending
                .iter()
                .partition(|&&i| inserted.contains(&params[i].id));
            // Woken now: what is committed is due whatever follows fails.
            if !done.is_empty() {
                self.wake(done.iter().any(|&i| params[i].concurrency_key.is_some()));
            }
            for i in done {
                answers[i] = Some(Queued::Task(params[i].id));
            }
            if rest.is_empty() {
                pending = rest;
                break;
            }
            let rest_params: Vec<&TaskInsertParams> = rest.iter().map(|&i| &params[i]).collect();
            let standing = Standing::from(self.driver().task_standing_for(&rest_params).await?);
            let cached = match from_cache {
                true => self.cached(&rest_params).await?,
                false => HashMap::new(),
            };
            pending = Vec::new();
            for i in rest {
                let p = &params[i];
                // A resend is itself; then the cache answers (as it did
                // when read before the insert); then a live task folds it.
                let hit = p.cache_key.as_ref().and_then(|k| cached.get(k));
                answers[i] = match (standing.ids.contains(&p.id), hit) {
                    (true, _) => Some(Queued::Task(p.id)),
                    (false, Some((value, expires_at))) if *expires_at > p.now => {
                        Some(Queued::Cached(value.clone()))
                    }
                    _ => standing.stand_in(p).map(Queued::Task),
                };
                if answers[i].is_none() {
                    pending.push(i);
                }
            }
        }
        if !pending.is_empty() {
            return Err(StoreError::Unavailable(
                "a submission kept matching tasks that finished; retry".into(),
            ));
        }
        Ok(answers
            .into_iter()
            .map(|a| a.unwrap_or(Queued::Task(TaskId::default())))
            .collect())
    }

    /// The cache entries of these submissions' keys, in one round trip:
    /// key → (result, expiry).
    async fn cached(
        &self,
        params: &[&TaskInsertParams],
    ) -> Result<HashMap<String, (serde_json::Value, DateTime<Utc>)>, StoreError> {
        let keys: Vec<&str> = params
            .iter()
            .filter_map(|p| p.cache_key.as_deref())
            .collect();
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let entries = self.driver().cache_entries(&keys).await?;
        Ok(entries
            .into_iter()
            .map(|(key, value, expires_at)| (key, (value, expires_at)))
            .collect())
    }

    /// The first call with `key` queues the task; later ones within `window`
    /// get the task the key names (`false`: not created now), when they
    /// carry the first one's fingerprint.
    pub(super) async fn insert_idempotent(
        &self,
        p: &TaskInsertParams,
        key: &IdempotencyKey,
        window: std::time::Duration,
    ) -> Result<(Task, bool), StoreError> {
        let oldest = p.now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let mut tx = self.driver().begin().await?;
        let fingerprint = key.fingerprint.as_deref();
        if let Some(held) = tx
            .idempotency_key_take(&key.key, fingerprint, p.id, p.now, oldest)
            .await?
        {
            tx.commit().await?;
            let existing = held.task;
            if let (Some(first), Some(this)) = (held.fingerprint.as_deref(), fingerprint) {
                if first != this {
                    return Err(StoreError::IdempotencyKeyReused(format!("task {existing}")));
                }
            }
            let task = self.driver().task_get(existing).await?.ok_or_else(|| {
                StoreError::Corrupt(format!("idempotency key names missing task {existing}"))
            })?;
            return Ok((task, false));
        }
        if let Some(task) = tx.task_insert_returning(p).await? {
            tx.commit().await?;
            self.wake_workers();
            return Ok((task, true));
        }
        // Not inserted: a resend of this id, or the same input live. The key
        // names that task. When it finished meanwhile, the key is given back
        // (the transaction rolls back) and the caller retries.
        let task = tx
            .task_standing_for(p.id, p.cache_key.as_deref())
            .await?
            .ok_or_else(|| {
                StoreError::Unavailable("a matching task finished meanwhile; retry".into())
            })?;
        tx.idempotency_key_point(&key.key, task.id).await?;
        tx.commit().await?;
        Ok((task, false))
    }
}

/// Stored tasks found for submissions that were not inserted.
struct Standing {
    ids: HashSet<TaskId>,
    by_key: HashMap<String, TaskId>,
}

impl From<Vec<StandingTask>> for Standing {
    fn from(found: Vec<StandingTask>) -> Self {
        let mut s = Standing {
            ids: HashSet::with_capacity(found.len()),
            by_key: HashMap::new(),
        };
        for t in found {
            s.ids.insert(t.id);
            if let Some(k) = t.cache_key {
                s.by_key.insert(k, t.id);
            }
        }
        s
    }
}

impl Standing {
    /// The task standing for `p`: itself (a resend), or the live task with
    /// its input.
    fn stand_in(&self, p: &TaskInsertParams) -> Option<TaskId> {
        if self.ids.contains(&p.id) {
            return Some(p.id);
        }
        p.cache_key
            .as_ref()
            .and_then(|k| self.by_key.get(k).copied())
    }
}
