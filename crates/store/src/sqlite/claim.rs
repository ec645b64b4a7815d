//! Claiming under limits on SQLite: the same rules as on PostgreSQL (named
//! queues with concurrency and rate limits, concurrency keys), simpler to
//! enforce — the single writer connection serialises every claim, so a count
//! taken inside the claim's transaction holds until it commits.

use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};
use weir_core::{ClaimedTask, StoreError, TaskClaimParams};

use super::rows::{claimed_from_row, millis, time};
use super::{err, SqliteStore};
use crate::shared::lease_end;

/// Tasks no limit touches; `{filter}` is [`crate::shared::fast_claim_filter`].
const FAST_CLAIM_SQL: &str = "\
UPDATE tasks SET state = 'running', attempts = attempts + 1, lease_token = lease_token + 1,
                 worker_id = ?1, started_at = ?2, lease_expires_at = ?3
WHERE id IN (
    SELECT id FROM tasks WHERE state = 'queued' AND run_at <= ?2 AND {filter}
    ORDER BY priority DESC, run_at, id LIMIT ?4)
RETURNING id, kind, input, attempts, max_attempts, lease_token, backoff_base_ms, backoff_cap_ms,
          timeout_ms";

/// Tasks of one limited queue (`?5`) or of one key (`?6`), or both; `?7`:
/// the claimer's queues (JSON) when `?5` is NULL.
const FILTERED_CLAIM_SQL: &str = "\
UPDATE tasks SET state = 'running', attempts = attempts + 1, lease_token = lease_token + 1,
                 worker_id = ?1, started_at = ?2, lease_expires_at = ?3
WHERE id IN (
    SELECT id FROM tasks WHERE state = 'queued' AND run_at <= ?2
      AND (CASE WHEN ?5 IS NULL
                THEN NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = tasks.queue
                                 AND (q.concurrency IS NOT NULL OR q.rate_per_second IS NOT NULL))
                     AND (?7 IS NULL OR queue IN (SELECT value FROM json_each(?7)))
                ELSE queue = ?5 END)
      AND (CASE WHEN ?6 IS NULL THEN concurrency_key IS NULL ELSE concurrency_key = ?6 END)
      AND (?8 IS NULL OR kind IN (SELECT value FROM json_each(?8)))
    ORDER BY priority DESC, run_at, id LIMIT ?4)
RETURNING id, kind, input, attempts, max_attempts, lease_token, backoff_base_ms, backoff_cap_ms,
          timeout_ms";

const KEYS_PER_CLAIM: i64 = 64;

struct Claim<'a> {
    p: &'a TaskClaimParams,
    queues_json: Option<String>,
    types_json: Option<String>,
    now: i64,
    expires: i64,
}

impl SqliteStore {
    pub(super) async fn claim(&self, p: &TaskClaimParams) -> Result<Vec<ClaimedTask>, StoreError> {
        let c = Claim {
            p,
            queues_json: p
                .queues
                .as_ref()
                .map(|q| serde_json::Value::from(q.clone()).to_string()),
            types_json: p
                .types
                .as_ref()
                .map(|t| serde_json::Value::from(t.clone()).to_string()),
            now: millis(p.now),
            expires: millis(lease_end(p.now, p.lease)),
        };
        let limited = self.limited_queues().await?;
        let sql = FAST_CLAIM_SQL.replace(
            "{filter}",
            &crate::shared::fast_claim_filter(&limited, p.queues.as_deref(), p.types.as_deref()),
        );
        let rows = sqlx::query(&sql)
            .bind(&p.worker_id)
            .bind(c.now)
            .bind(c.expires)
            .bind(i64::from(p.max))
            .fetch_all(&self.writer)
            .await
            .map_err(err)?;
        let mut claimed = rows
            .iter()
            .map(claimed_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if claimed.len() < p.max as usize
            && (!limited.is_empty() || self.keyed_tasks_due(c.now).await?)
        {
            let room = i64::from(p.max) - claimed.len() as i64;
            // IMMEDIATE: take the write lock up front, so another process's
            // writer cannot slip in between the counts and the claims.
            let mut tx = self
                .writer
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(err)?;
            claim_limited(&mut tx, &c, room, &mut claimed).await?;
            tx.commit().await.map_err(err)?;
        }
        // RETURNING order is unspecified; ids are time-ordered.
        claimed.sort_by_key(|t| t.id);
        Ok(claimed)
    }

    /// Whether a due task has a key (skipped for a moment after finding none).
    async fn keyed_tasks_due(&self, now: i64) -> Result<bool, StoreError> {
        let inserts = *self.inserted.borrow();
        if !self.keyed.worth_looking(inserts) {
            return Ok(false);
        }
        let due: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE concurrency_key IS NOT NULL \
                            AND state = 'queued' AND run_at <= ?)",
        )
        .bind(now)
        .fetch_one(&self.reader)
        .await
        .map_err(err)?;
        if !due {
            self.keyed.found_none(inserts);
        }
        Ok(due)
    }

    /// Names of queues with limits (cached for a second).
    async fn limited_queues(&self) -> Result<Vec<String>, StoreError> {
        if let Some(names) = self.limited.get() {
            return Ok(names);
        }
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM queues WHERE concurrency IS NOT NULL OR rate_per_second IS NOT NULL",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        self.limited.set(names.clone());
        Ok(names)
    }
}

async fn claim_limited(
    tx: &mut SqliteConnection,
    c: &Claim<'_>,
    mut room: i64,
    claimed: &mut Vec<ClaimedTask>,
) -> Result<(), StoreError> {
    let queues = sqlx::query(
        "SELECT name, concurrency, rate_per_second, burst, tokens, refilled_at FROM queues \
         WHERE (concurrency IS NOT NULL OR rate_per_second IS NOT NULL) \
           AND (?1 IS NULL OR name IN (SELECT value FROM json_each(?1))) ORDER BY name",
    )
    .bind(&c.queues_json)
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
        let refilled_at: Option<i64> = q.try_get("refilled_at").map_err(err)?;
        let refilled_at: Option<DateTime<Utc>> = refilled_at.map(time).transpose()?;
        let mut allowed = room;
        if let Some(limit) = concurrency {
            let running: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM tasks WHERE queue = ? AND state = 'running'",
            )
            .bind(&name)
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
            allowed = allowed.min(i64::from(limit) - running);
        }
        let bucket =
            rate.map(|rate| crate::shared::refill(tokens, refilled_at, rate, burst, c.p.now));
        if let Some(available) = bucket {
            allowed = allowed.min(available.floor() as i64);
        }
        if allowed <= 0 {
            continue;
        }
        let before = claimed.len();
        claim_filtered(tx, c, allowed, Some(&name), None, claimed).await?;
        let left = allowed - (claimed.len() - before) as i64;
        if left > 0 {
            claim_keyed(tx, c, Some(&name), left, claimed).await?;
        }
        let taken = (claimed.len() - before) as i64;
        room -= taken;
        if let Some(available) = bucket {
            sqlx::query("UPDATE queues SET tokens = ?, refilled_at = ? WHERE name = ?")
                .bind(available - taken as f64)
                .bind(c.now)
                .bind(&name)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
    }
    if room > 0 {
        claim_keyed(tx, c, None, room, claimed).await?;
    }
    Ok(())
}

async fn claim_keyed(
    tx: &mut SqliteConnection,
    c: &Claim<'_>,
    queue: Option<&str>,
    mut room: i64,
    claimed: &mut Vec<ClaimedTask>,
) -> Result<(), StoreError> {
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT concurrency_key FROM tasks \
         WHERE concurrency_key IS NOT NULL AND state = 'queued' AND run_at <= ?1 \
           AND (CASE WHEN ?2 IS NULL \
                     THEN NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = tasks.queue \
                                      AND (q.concurrency IS NOT NULL OR q.rate_per_second IS NOT NULL)) \
                          AND (?3 IS NULL OR queue IN (SELECT value FROM json_each(?3))) \
                     ELSE queue = ?2 END) \
           AND (?5 IS NULL OR kind IN (SELECT value FROM json_each(?5))) \
         LIMIT ?4",
    )
    .bind(c.now)
    .bind(queue)
    .bind(&c.queues_json)
    .bind(KEYS_PER_CLAIM)
    .bind(&c.types_json)
    .fetch_all(&mut *tx)
    .await
    .map_err(err)?;
    for key in keys {
        if room == 0 {
            break;
        }
        let running: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tasks WHERE concurrency_key = ? AND state = 'running'",
        )
        .bind(&key)
        .fetch_one(&mut *tx)
        .await
        .map_err(err)?;
        let n = room.min(i64::from(c.p.key_limit) - running);
        if n <= 0 {
            continue;
        }
        let before = claimed.len();
        claim_filtered(tx, c, n, queue, Some(&key), claimed).await?;
        room -= (claimed.len() - before) as i64;
    }
    Ok(())
}

async fn claim_filtered(
    tx: &mut SqliteConnection,
    c: &Claim<'_>,
    limit: i64,
    queue: Option<&str>,
    key: Option<&str>,
    claimed: &mut Vec<ClaimedTask>,
) -> Result<(), StoreError> {
    let rows = sqlx::query(FILTERED_CLAIM_SQL)
        .bind(&c.p.worker_id)
        .bind(c.now)
        .bind(c.expires)
        .bind(limit)
        .bind(queue)
        .bind(key)
        .bind(&c.queues_json)
        .bind(&c.types_json)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
    for row in &rows {
        claimed.push(claimed_from_row(row)?);
    }
    Ok(())
}
