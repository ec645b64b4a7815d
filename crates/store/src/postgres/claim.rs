//! Claiming under limits: named queues with cluster-wide concurrency and rate
//! limits, and concurrency keys (at most `key_limit` running per key).
//!
//! The fast path is one statement over tasks that no limit touches (no key,
//! queue without limits). Only when it leaves room, and only when some limit
//! could apply, the slow path runs in one transaction:
//! - each limited queue's row is locked `FOR UPDATE SKIP LOCKED`, so the
//!   claimers of one queue take turns (the others skip it this round); its
//!   running tasks are counted and its token bucket refilled and spent;
//! - each concurrency key is taken with `pg_try_advisory_xact_lock` (released
//!   at commit; unlike session locks, safe behind a transaction pooler), and
//!   its running tasks are counted.
//!
//! Nothing waits on a lock, so claimers cannot deadlock.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use weir_core::{ClaimedTask, StoreError, TaskClaimParams};

use super::rows::claimed_from_row;
use super::{err, PostgresStore};
use crate::shared::lease_end;

/// Tasks no limit touches; `{filter}` is [`crate::shared::fast_claim_filter`].
/// Walks the partial index `tasks_claim` in order and skips rows other
/// claimers hold, so concurrent workers never queue behind each other.
pub const TASK_CLAIM_SQL: &str = "\
WITH picked AS (
    SELECT id FROM tasks WHERE state = 'queued' AND run_at <= $2 AND {filter}
    ORDER BY priority DESC, run_at, id LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks t SET state = 'running', attempts = t.attempts + 1, lease_token = t.lease_token + 1,
                   worker_id = $1, started_at = $2, lease_expires_at = $3
FROM picked WHERE t.id = picked.id
RETURNING t.id, t.kind, t.input, t.attempts, t.max_attempts, t.lease_token, t.priority, t.run_at,
          t.backoff_base_ms, t.backoff_cap_ms, t.timeout_ms";

/// Tasks of one limited queue (`$5`) or of one key (`$6`), or both.
const CLAIM_FILTERED_SQL: &str = "\
WITH picked AS (
    SELECT id FROM tasks WHERE state = 'queued' AND run_at <= $2
      AND (CASE WHEN $5::text IS NULL
                THEN NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = tasks.queue
                                 AND (q.concurrency IS NOT NULL OR q.rate_per_second IS NOT NULL))
                     AND ($7::text[] IS NULL OR queue = ANY($7))
                ELSE queue = $5 END)
      AND (CASE WHEN $6::text IS NULL THEN concurrency_key IS NULL ELSE concurrency_key = $6 END)
      AND ($8::text[] IS NULL OR kind = ANY($8))
    ORDER BY priority DESC, run_at, id LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks t SET state = 'running', attempts = t.attempts + 1, lease_token = t.lease_token + 1,
                   worker_id = $1, started_at = $2, lease_expires_at = $3
FROM picked WHERE t.id = picked.id
RETURNING t.id, t.kind, t.input, t.attempts, t.max_attempts, t.lease_token, t.priority, t.run_at,
          t.backoff_base_ms, t.backoff_cap_ms, t.timeout_ms";

/// Keys with due tasks looked at per claim.
const KEYS_PER_CLAIM: i64 = 64;

type Claimed = (std::cmp::Reverse<i32>, DateTime<Utc>, ClaimedTask);

fn collect(rows: &[sqlx::postgres::PgRow], into: &mut Vec<Claimed>) -> Result<(), StoreError> {
    for row in rows {
        let priority: i32 = row.try_get("priority").map_err(err)?;
        let run_at: DateTime<Utc> = row.try_get("run_at").map_err(err)?;
        into.push((std::cmp::Reverse(priority), run_at, claimed_from_row(row)?));
    }
    Ok(())
}

impl PostgresStore {
    pub(super) async fn claim(&self, p: &TaskClaimParams) -> Result<Vec<ClaimedTask>, StoreError> {
        let mut claimed = Vec::with_capacity(p.max as usize);
        let limited = self.limited_queues().await?;
        let sql = TASK_CLAIM_SQL.replace(
            "{filter}",
            &crate::shared::fast_claim_filter(&limited, p.queues.as_deref(), p.types.as_deref()),
        );
        let rows = sqlx::query(&sql)
            .bind(&p.worker_id)
            .bind(p.now)
            .bind(lease_end(p.now, p.lease))
            .bind(i64::from(p.max))
            .fetch_all(self.pool())
            .await
            .map_err(err)?;
        collect(&rows, &mut claimed)?;
        if claimed.len() < p.max as usize
            && (!limited.is_empty() || self.keyed_tasks_due(p).await?)
        {
            let room = p.max as i64 - claimed.len() as i64;
            let mut tx = self.pool().begin().await.map_err(err)?;
            claim_limited(&mut tx, p, room, &mut claimed).await?;
            tx.commit().await.map_err(err)?;
        }
        // RETURNING order is unspecified; hand tasks out in claim order.
        claimed.sort_by_key(|(priority, run_at, t)| (*priority, *run_at, t.id));
        Ok(claimed.into_iter().map(|(_, _, t)| t).collect())
    }

    /// Whether a due task has a key (cheap: keyed tasks are indexed; and
    /// skipped for a moment after finding none).
    async fn keyed_tasks_due(&self, p: &TaskClaimParams) -> Result<bool, StoreError> {
        let inserts = *self.inserted.borrow();
        if !self.keyed.worth_looking(inserts) {
            return Ok(false);
        }
        let due: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE concurrency_key IS NOT NULL \
                            AND state = 'queued' AND run_at <= $1)",
        )
        .bind(p.now)
        .fetch_one(self.pool())
        .await
        .map_err(err)?;
        if !due {
            self.keyed.found_none(inserts);
        }
        Ok(due)
    }

    /// Names of queues with limits (cached for a second).
    pub(super) async fn limited_queues(&self) -> Result<Vec<String>, StoreError> {
        if let Some(names) = self.limited.get() {
            return Ok(names);
        }
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM queues WHERE concurrency IS NOT NULL OR rate_per_second IS NOT NULL",
        )
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        self.limited.set(names.clone());
        Ok(names)
    }
}

async fn claim_limited(
    tx: &mut PgConnection,
    p: &TaskClaimParams,
    mut room: i64,
    claimed: &mut Vec<Claimed>,
) -> Result<(), StoreError> {
    let queues = sqlx::query(
        "SELECT name, concurrency, rate_per_second, burst, tokens, refilled_at FROM queues \
         WHERE (concurrency IS NOT NULL OR rate_per_second IS NOT NULL) \
           AND ($1::text[] IS NULL OR name = ANY($1)) \
         ORDER BY name FOR UPDATE SKIP LOCKED",
    )
    .bind(&p.queues)
    .fetch_all(&mut *tx)
    .await
    .map_err(err)?;
    for q in &queues {
        if room == 0 {
            return Ok(());
        }
        let name: String = q.try_get("name").map_err(err)?;
        let concurrency: Option<i32> = q.try_get("concurrency").map_err(err)?;
        let rate: Option<f64> = q.try_get("rate_per_second").map_err(err)?;
        let burst: Option<i32> = q.try_get("burst").map_err(err)?;
        let tokens: f64 = q.try_get("tokens").map_err(err)?;
        let refilled_at: Option<DateTime<Utc>> = q.try_get("refilled_at").map_err(err)?;
        let mut allowed = room;
        if let Some(limit) = concurrency {
            let running: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM tasks WHERE queue = $1 AND state = 'running'",
            )
            .bind(&name)
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
            allowed = allowed.min(i64::from(limit) - running);
        }
        let bucket =
            rate.map(|rate| crate::shared::refill(tokens, refilled_at, rate, burst, p.now));
        if let Some(available) = bucket {
            allowed = allowed.min(available.floor() as i64);
        }
        if allowed <= 0 {
            continue;
        }
        let before = claimed.len();
        let rows = sqlx::query(CLAIM_FILTERED_SQL)
            .bind(&p.worker_id)
            .bind(p.now)
            .bind(lease_end(p.now, p.lease))
            .bind(allowed)
            .bind(&name)
            .bind(None::<String>)
            .bind(None::<Vec<String>>)
            .bind(&p.types)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
        collect(&rows, claimed)?;
        let left = allowed - (claimed.len() - before) as i64;
        if left > 0 {
            claim_keyed(tx, p, Some(&name), left, claimed).await?;
        }
        let taken = (claimed.len() - before) as i64;
        room -= taken;
        if let Some(available) = bucket {
            sqlx::query("UPDATE queues SET tokens = $2, refilled_at = $3 WHERE name = $1")
                .bind(&name)
                .bind(available - taken as f64)
                .bind(p.now)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
    }
    if room > 0 {
        claim_keyed(tx, p, None, room, claimed).await?;
    }
    Ok(())
}

/// Keyed tasks, of one limited queue or of the unlimited ones, up to `room`.
async fn claim_keyed(
    tx: &mut PgConnection,
    p: &TaskClaimParams,
    queue: Option<&str>,
    mut room: i64,
    claimed: &mut Vec<Claimed>,
) -> Result<(), StoreError> {
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT concurrency_key FROM tasks \
         WHERE concurrency_key IS NOT NULL AND state = 'queued' AND run_at <= $1 \
           AND (CASE WHEN $2::text IS NULL \
                     THEN NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = tasks.queue \
                                      AND (q.concurrency IS NOT NULL OR q.rate_per_second IS NOT NULL)) \
                          AND ($3::text[] IS NULL OR queue = ANY($3)) \
                     ELSE queue = $2 END) \
           AND ($5::text[] IS NULL OR kind = ANY($5)) \
         LIMIT $4",
    )
    .bind(p.now)
    .bind(queue)
    .bind(&p.queues)
    .bind(KEYS_PER_CLAIM)
    .bind(&p.types)
    .fetch_all(&mut *tx)
    .await
    .map_err(err)?;
    for key in keys {
        if room == 0 {
            break;
        }
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 7))")
                .bind(format!("weir:concurrency_key:{key}"))
                .fetch_one(&mut *tx)
                .await
                .map_err(err)?;
        if !locked {
            continue;
        }
        let running: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tasks WHERE concurrency_key = $1 AND state = 'running'",
        )
        .bind(&key)
        .fetch_one(&mut *tx)
        .await
        .map_err(err)?;
        let n = room.min(i64::from(p.key_limit) - running);
        if n <= 0 {
            continue;
        }
        let rows = sqlx::query(CLAIM_FILTERED_SQL)
            .bind(&p.worker_id)
            .bind(p.now)
            .bind(lease_end(p.now, p.lease))
            .bind(n)
            .bind(queue)
            .bind(&key)
            .bind(&p.queues)
            .bind(&p.types)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
        room -= rows.len() as i64;
        collect(&rows, claimed)?;
    }
    Ok(())
}
