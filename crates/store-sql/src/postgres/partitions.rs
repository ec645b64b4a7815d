//! Finished tasks kept in day partitions, per state (migration 0019): made
//! ahead of time and dropped whole once their day's retention is over, so a
//! prune is a `DROP TABLE` rather than row deletes and their vacuum debt.
//! Both run in functions the migration installs with the schema owner's
//! rights: workers, under least privilege, may not make or drop tables.
//!
//! A day's partition goes once its day ended more than the retention ago
//! (its tasks are then kept up to a day longer than the retention); the
//! default partition (tasks older than the partitions, or finished after
//! their day went) is pruned row by row. So is everything under a retention
//! shorter than a day, where a day's partition would keep tasks too long.

use chrono::{DateTime, Duration, Utc};
use weir_core::{StoreError, TaskState};

use super::err;
use super::exec::PgExec;

/// Most rows a day's drop moves to the default partition first (tasks made
/// that day that finished late, a stored workflow's steps): the move holds
/// the state's table, so a day with more waits for a later pass.
const CARRY_MAX: i32 = 10_000;

/// The finished states, each partitioned apart.
const STATES: [TaskState; 3] = [TaskState::Succeeded, TaskState::Dead, TaskState::Cancelled];

/// Days made ahead: a pass missed (no leader for a while) never leaves
/// today without its partition.
const DAYS_AHEAD: i64 = 2;

/// Makes every state's day partitions from `now`'s day on.
pub(super) async fn make_all(exec: &PgExec, now: DateTime<Utc>) -> Result<i32, StoreError> {
    let mut made = 0;
    for state in STATES {
        made += make(exec, state, now).await?;
    }
    Ok(made)
}

async fn make(exec: &PgExec, state: TaskState, now: DateTime<Utc>) -> Result<i32, StoreError> {
    let today = now.date_naive();
    sqlx::query_scalar("SELECT weir_finished_days_make($1, $2, $3)")
        .bind(state.as_str())
        .bind(today)
        .bind(today + Duration::days(DAYS_AHEAD))
        .fetch_one(exec)
        .await
        .map_err(err)
}

/// Prunes `state`'s tasks that finished before `before`: whole days first,
/// then up to `limit` rows.
pub(super) async fn prune(
    exec: &PgExec,
    state: TaskState,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<u64, StoreError> {
    make(exec, state, now).await?;
    let mut deleted = 0;
    loop {
        let started = std::time::Instant::now();
        let dropped: i64 = sqlx::query_scalar("SELECT weir_finished_day_drop($1, $2, $3)")
            .bind(state.as_str())
            .bind(before)
            .bind(CARRY_MAX)
            .fetch_one(exec)
            .await
            .map_err(err)?;
        if dropped < 0 {
            break;
        }
        tracing::info!(
            state = state.as_str(),
            tasks = dropped,
            ms = started.elapsed().as_millis() as u64,
            "dropped a day of finished tasks"
        );
        deleted += dropped as u64;
    }
    let table = if now - before < Duration::days(1) {
        "tasks_finished".to_string()
    } else {
        format!("tasks_finished_{}_default", state.as_str())
    };
    // A workflow's steps stay while it does (its cleaner pass frees them).
    let sql = format!(
        "DELETE FROM {table} WHERE state = '{state}' AND id IN (SELECT f.id FROM {table} f \
         WHERE f.completed_at < $1 AND f.state = '{state}' \
           AND NOT EXISTS (SELECT 1 FROM workflow_steps s WHERE s.task_id = f.id) \
         ORDER BY f.completed_at LIMIT $2)",
        state = state.as_str()
    );
    let rows = sqlx::query(&sql)
        .bind(before)
        .bind(limit)
        .execute(exec)
        .await
        .map_err(err)?
        .rows_affected();
    Ok(deleted + rows)
}
