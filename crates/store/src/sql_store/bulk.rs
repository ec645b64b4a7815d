//! Bulk actions, whatever the database: a batch at a time, each one
//! transaction that applies the action to at most [`BATCH`] tasks and moves
//! the action's cursor past them, so a batch is done once or not at all —
//! a restart resumes after the last batch, and no task is changed twice.

use chrono::{DateTime, Utc};
use weir_core::{BulkAction, BulkJob, NewBulk, StoreError, TaskId, TaskState};

use super::{workflow, SqlStore};
use crate::driver::{BulkProgress, BulkRow};

/// Most tasks one batch changes: the longest a batch holds the write side
/// (SQLite's one lock; PostgreSQL's row locks), so claims never wait long.
pub(crate) const BATCH: usize = 200;

/// How long a holder keeps a bulk action between batches before another
/// node may take it over (seconds).
const LEASE_SECONDS: i64 = 10;

/// Sorted newest first, without repeats: the order batches take ids in,
/// the same as a filter's.
pub(crate) fn sorted_ids(mut ids: Vec<TaskId>) -> Vec<TaskId> {
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    ids
}

impl SqlStore {
    pub(super) async fn bulk_insert(&self, mut bulk: NewBulk) -> Result<BulkJob, StoreError> {
        bulk.ids = bulk.ids.map(sorted_ids);
        let id = bulk.id;
        // Over a filter: the tasks created before it (ids below its own).
        // Over ids: every one given, whenever it was made.
        let cursor = match bulk.ids {
            Some(_) => TaskId(uuid::Uuid::max()),
            None => TaskId(id.0),
        };
        self.call(|| self.driver().bulk_insert(&bulk, cursor))
            .await?;
        self.call(|| self.driver().bulk_get(id))
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("bulk action {id} vanished")))
    }

    /// One batch of an unfinished bulk action this holder may take.
    pub(super) async fn bulk_batch(
        &self,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<BulkJob>, StoreError> {
        let until = now + chrono::TimeDelta::seconds(LEASE_SECONDS);
        let Some(row) = self
            .call(|| self.driver().bulk_take(holder, now, until))
            .await?
        else {
            return Ok(None);
        };
        let BulkRow { job, ids, cursor } = row;
        // The ids to look at this batch: the next slice of those given, or
        // the next page of what the filter matches.
        // Newest first: the ones below the cursor start where a binary
        // search puts it.
        let given: Option<Vec<TaskId>> = ids.map(|ids| {
            let start = ids.partition_point(|id| *id >= cursor);
            ids[start..].iter().take(BATCH).copied().collect()
        });
        let matched = self
            .call(|| {
                self.driver().task_ids_matching(
                    &job.filter,
                    job.action.acts_on(),
                    given.as_deref(),
                    cursor,
                    BATCH as i64,
                )
            })
            .await?;
        let looked = given.as_ref().map_or(matched.len(), Vec::len);
        let cursor_after = given.as_ref().unwrap_or(&matched).last().copied();
        // The batch's changes and the cursor past them commit together.
        let outcome = self
            .call(|| async {
                let mut tx = self.driver().begin().await?;
                let (changed, outcome) = apply(&mut *tx, job.action, &matched, now).await?;
                let progress = BulkProgress {
                    cursor: cursor_after.unwrap_or(cursor),
                    processed: looked as i64,
                    changed: changed as i64,
                    skipped: (looked - changed) as i64,
                    done: looked < BATCH,
                    now,
                };
                if !tx.bulk_advance(job.id, holder, &progress).await? {
                    // Another node took it over: this batch is theirs.
                    return Ok(None);
                }
                tx.commit().await?;
                Ok(Some(outcome))
            })
            .await?;
        if let Some(outcome) = outcome {
            self.after_steps(outcome);
        }
        self.call(|| self.driver().bulk_get(job.id)).await
    }
}

/// Applies `action` to each of `ids` still in a state it acts on; how many
/// it changed, and what their ends did to workflows.
async fn apply(
    tx: &mut dyn crate::driver::DriverTx,
    action: BulkAction,
    ids: &[TaskId],
    now: DateTime<Utc>,
) -> Result<(usize, workflow::StepsOutcome), StoreError> {
    let mut outcome = workflow::StepsOutcome::default();
    let changed = match action {
        BulkAction::Retry => {
            let mut changed = 0;
            for &id in ids {
                if tx.task_retry_dead(id, now).await?.is_some() {
                    workflow::step_retried(tx, id, now).await?;
                    changed += 1;
                }
            }
            // Queued again: workers are woken like by an insert.
            outcome.queued = changed > 0;
            changed
        }
        BulkAction::Cancel => {
            let mut ended = Vec::new();
            for &id in ids {
                if tx.task_cancel_live(id, now).await?.is_some() {
                    ended.push((id, TaskState::Cancelled));
                }
            }
            outcome = workflow::steps_ended(tx, &ended, now).await?;
            ended.len()
        }
        BulkAction::Delete => tx.tasks_delete_finished(ids).await? as usize,
    };
    Ok((changed, outcome))
}
