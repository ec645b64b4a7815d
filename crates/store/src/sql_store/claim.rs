//! Claim admission: which due tasks a claimer may take under the queues'
//! concurrency and rate limits and the concurrency keys' limit.
//!
//! The fast path is one statement over tasks no limit touches (no key, a
//! queue without limits). Only when it leaves room, and only when some limit
//! could apply, the slow path runs in one transaction:
//! - each limited queue is locked (where the dialect can; a queue another
//!   claimer holds is skipped this round), its running tasks counted, and its
//!   token bucket refilled and spent;
//! - each concurrency key is locked the same way and its running tasks counted.
//!
//! Nothing waits on a lock, so claimers cannot deadlock.

use weir_core::{ClaimedTask, StoreError, TaskClaimParams};

use super::SqlStore;
use crate::driver::{Claimed, DriverTx};
use crate::hints::refill;

/// Keys with due tasks looked at per claim.
const KEYS_PER_CLAIM: i64 = 64;

impl SqlStore {
    pub(super) async fn claim(&self, p: &TaskClaimParams) -> Result<Vec<ClaimedTask>, StoreError> {
        let limited = self.limited_queues().await?;
        let mut claimed = self.driver().claim_unlimited(p, &limited).await?;
        if claimed.len() < p.max as usize
            && (!limited.is_empty() || self.keyed_tasks_due(p).await?)
        {
            let room = i64::from(p.max) - claimed.len() as i64;
            let mut tx = self.driver().begin().await?;
            claim_limited(&mut *tx, p, room, &mut claimed).await?;
            tx.commit().await?;
        }
        // Every dialect hands tasks out in the same order.
        claimed.sort_by(|a, b| {
            (std::cmp::Reverse(a.priority), a.task.run_at, a.task.id).cmp(&(
                std::cmp::Reverse(b.priority),
                b.task.run_at,
                b.task.id,
            ))
        });
        Ok(claimed.into_iter().map(|c| c.task).collect())
    }

    /// Whether a due task has a key (skipped for a moment after finding none,
    /// until a wake-up says keyed tasks may be due).
    async fn keyed_tasks_due(&self, p: &TaskClaimParams) -> Result<bool, StoreError> {
        let keyed_wakes = self.shared.wakeups.keyed_count();
        if !self.shared.keyed.worth_looking(keyed_wakes) {
            return Ok(false);
        }
        let due = self.driver().keyed_tasks_due(p.now).await?;
        if !due {
            self.shared.keyed.found_none(keyed_wakes);
        }
        Ok(due)
    }

    /// Names of queues with limits (cached for a second).
    async fn limited_queues(&self) -> Result<Vec<String>, StoreError> {
        if let Some(names) = self.shared.limited.get() {
            return Ok(names);
        }
        let names = self.driver().limited_queue_names().await?;
        self.shared.limited.set(names.clone());
        Ok(names)
    }
}

/// Tasks of the limited queues, then keyed tasks of the unlimited ones, up to `room`.
async fn claim_limited(
    tx: &mut dyn DriverTx,
    p: &TaskClaimParams,
    mut room: i64,
    claimed: &mut Vec<Claimed>,
) -> Result<(), StoreError> {
    for q in tx.limited_queues_lock(p.queues.as_deref()).await? {
        if room == 0 {
            return Ok(());
        }
        if q.paused {
            continue;
        }
        let mut allowed = room;
        if let Some(limit) = q.concurrency {
            let running = tx.running_in_queue(&q.name).await?;
            allowed = allowed.min(i64::from(limit) - running);
        }
        let bucket = q
            .rate_per_second
            .map(|rate| refill(q.tokens, q.refilled_at, rate, q.burst, p.now));
        if let Some(available) = bucket {
            allowed = allowed.min(available.floor() as i64);
        }
        if allowed <= 0 {
            continue;
        }
        let before = claimed.len();
        claimed.extend(tx.claim_filtered(p, Some(&q.name), None, allowed).await?);
        let left = allowed - (claimed.len() - before) as i64;
        if left > 0 {
            claim_keyed(tx, p, Some(&q.name), left, claimed).await?;
        }
        let taken = (claimed.len() - before) as i64;
        room -= taken;
        if let Some(available) = bucket {
            tx.bucket_save(&q.name, available - taken as f64, p.now)
                .await?;
        }
    }
    if room > 0 {
        claim_keyed(tx, p, None, room, claimed).await?;
    }
    Ok(())
}

/// Keyed tasks, of one limited queue or of the unlimited ones, up to `room`.
async fn claim_keyed(
    tx: &mut dyn DriverTx,
    p: &TaskClaimParams,
    queue: Option<&str>,
    mut room: i64,
    claimed: &mut Vec<Claimed>,
) -> Result<(), StoreError> {
    for key in tx.due_keys(p, queue, KEYS_PER_CLAIM).await? {
        if room == 0 {
            break;
        }
        if !tx.key_try_lock(&key).await? {
            continue;
        }
        let running = tx.running_with_key(&key).await?;
        let n = room.min(i64::from(p.key_limit) - running);
        if n <= 0 {
            continue;
        }
        let got = tx.claim_filtered(p, queue, Some(&key), n).await?;
        room -= got.len() as i64;
        claimed.extend(got);
    }
    Ok(())
}
