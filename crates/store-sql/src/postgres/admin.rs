//! What operators read and steer on PostgreSQL: the task browser's filtered
//! pages over the live and finished tables, bulk actions, the audit log.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;
use weir_core::{
    AuditEntry, AuditListParams, BulkId, BulkJob, NewBulk, StoreError, Task, TaskFilter, TaskId,
    TaskListParams, TaskSort, TaskState,
};
use weir_store::{BulkProgress, BulkRow};

use super::err;
use super::exec::PgExec;
use super::rows::{decode, TaskRow, FINISHED_TASK_COLUMNS, LIVE_TASK_COLUMNS};
use super::tx::PostgresTx;

/// The smallest UUIDv7 of a millisecond: a task's id is made as it is
/// submitted, so "created before" is also a bound on ids, where every
/// index walk newest-first can start instead of reading past newer rows.
fn v7_floor(at: DateTime<Utc>) -> Uuid {
    let ms = at.timestamp_millis().max(0) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    Uuid::from_bytes(bytes)
}

/// Slack between a task's id and its `created_at` (the id is made first).
const ID_SLACK: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// The tables a filter can match in: live tasks, finished ones, or both.
fn tables(filter: &TaskFilter, states: &[TaskState], sort: TaskSort) -> [bool; 2] {
    let finished_only = filter.finished_only() || sort == TaskSort::Finished;
    let wants = |finished: bool| {
        let state_ok = match filter.state {
            Some(s) => s.is_final() == finished,
            None => true,
        };
        state_ok
            && (states.is_empty() || states.iter().any(|s| s.is_final() == finished))
            && (finished || !finished_only)
    };
    [wants(false), wants(true)]
}

/// ` AND …` for each field of the filter set, and for `states`.
fn push_filter(q: &mut QueryBuilder<'_, Postgres>, f: &TaskFilter, states: &[TaskState]) {
    if let Some(state) = f.state {
        q.push(" AND state = ").push_bind(state.as_str());
    }
    if !states.is_empty() {
        let names: Vec<&'static str> = states.iter().map(|s| s.as_str()).collect();
        q.push(" AND state = ANY(").push_bind(names).push(")");
    }
    if let Some(kind) = &f.kind {
        q.push(" AND kind = ").push_bind(kind.clone());
    }
    if let Some(queue) = &f.queue {
        q.push(" AND queue = ").push_bind(queue.clone());
    }
    if let Some(tenant) = &f.tenant {
        q.push(" AND tenant = ").push_bind(tenant.clone());
    }
    if let Some(workflow) = f.workflow {
        q.push(" AND id IN (SELECT task_id FROM workflow_steps WHERE workflow_id = ")
            .push_bind(workflow.0)
            .push(")");
    }
    if let Some(at) = f.created_after {
        // The newest first: an index walk reaches them first anyway.
        q.push(" AND created_at >= ").push_bind(at);
    }
    if let Some(at) = f.created_before {
        q.push(" AND created_at < ").push_bind(at);
        q.push(" AND id < ").push_bind(v7_floor(at + ID_SLACK));
    }
    if let Some(at) = f.finished_after {
        q.push(" AND completed_at >= ").push_bind(at);
    }
    if let Some(at) = f.finished_before {
        q.push(" AND completed_at < ").push_bind(at);
    }
    if let Some(text) = &f.error {
        q.push(" AND error ILIKE ")
            .push_bind(crate::filter::like_pattern(text))
            .push(" ESCAPE '\\'");
    }
}

pub(super) async fn task_list(exec: &PgExec, p: &TaskListParams) -> Result<Vec<Task>, StoreError> {
    let [live, finished] = tables(&p.filter, &[], p.sort);
    if !live && !finished {
        return Ok(Vec::new());
    }
    let order = match p.sort {
        TaskSort::Created => " ORDER BY id DESC",
        TaskSort::Finished => " ORDER BY completed_at DESC, id DESC",
    };
    let mut q = QueryBuilder::new("SELECT * FROM (");
    let mut first = true;
    for (table, columns, wanted) in [
        ("tasks", LIVE_TASK_COLUMNS, live),
        ("tasks_finished", FINISHED_TASK_COLUMNS, finished),
    ] {
        if !wanted {
            continue;
        }
        if !first {
            q.push(" UNION ALL ");
        }
        first = false;
        q.push(format!("(SELECT {columns} FROM {table} WHERE TRUE"));
        push_filter(&mut q, &p.filter, &[]);
        if let Some(after) = p.after {
            match (p.sort, after.finished_at) {
                (TaskSort::Finished, Some(at)) => {
                    q.push(" AND (completed_at, id) < (")
                        .push_bind(at)
                        .push(", ")
                        .push_bind(after.id.0)
                        .push(")");
                }
                _ => {
                    q.push(" AND id < ").push_bind(after.id.0);
                }
            }
        }
        q.push(order).push(" LIMIT ").push_bind(p.limit).push(")");
    }
    q.push(") t").push(order).push(" LIMIT ").push_bind(p.limit);
    let rows: Vec<TaskRow> = q.build_query_as().fetch_all(exec).await.map_err(err)?;
    decode(rows)
}

pub(super) async fn task_ids_matching(
    exec: &PgExec,
    filter: &TaskFilter,
    states: &[TaskState],
    among: Option<&[TaskId]>,
    before: TaskId,
    limit: i64,
) -> Result<Vec<TaskId>, StoreError> {
    let [live, finished] = tables(filter, states, TaskSort::Created);
    if !live && !finished {
        return Ok(Vec::new());
    }
    let among: Option<Vec<Uuid>> = among.map(|ids| ids.iter().map(|id| id.0).collect());
    let mut q = QueryBuilder::new("SELECT id FROM (");
    let mut first = true;
    for (table, wanted) in [("tasks", live), ("tasks_finished", finished)] {
        if !wanted {
            continue;
        }
        if !first {
            q.push(" UNION ALL ");
        }
        first = false;
        q.push(format!("(SELECT id FROM {table} WHERE id < "))
            .push_bind(before.0);
        push_filter(&mut q, filter, states);
        if let Some(among) = &among {
            q.push(" AND id = ANY(").push_bind(among.clone()).push(")");
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(limit)
            .push(")");
    }
    q.push(") t ORDER BY id DESC LIMIT ").push_bind(limit);
    let ids: Vec<Uuid> = q.build_query_scalar().fetch_all(exec).await.map_err(err)?;
    Ok(ids.into_iter().map(TaskId).collect())
}

const BULK_COLUMNS: &str = "id, action, ids, filter, status, cursor, processed, changed, \
    skipped, actor, created_at, finished_at";

from_row! { sqlx::postgres::PgRow =>
struct BulkDbRow {
    id: Uuid,
    action: String,
    ids: Option<Vec<Uuid>>,
    filter: sqlx::types::Json<TaskFilter>,
    status: String,
    cursor: Uuid,
    processed: i64,
    changed: i64,
    skipped: i64,
    actor: String,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}}

impl TryFrom<BulkDbRow> for BulkRow {
    type Error = StoreError;
    fn try_from(r: BulkDbRow) -> Result<Self, StoreError> {
        Ok(BulkRow {
            job: BulkJob {
                id: BulkId(r.id),
                action: r.action.parse().map_err(StoreError::Corrupt)?,
                status: r.status,
                ids: r.ids.as_ref().map(|ids| ids.len() as i64),
                filter: r.filter.0,
                processed: r.processed,
                changed: r.changed,
                skipped: r.skipped,
                actor: r.actor,
                created_at: r.created_at,
                finished_at: r.finished_at,
            },
            ids: r.ids.map(|ids| ids.into_iter().map(TaskId).collect()),
            cursor: TaskId(r.cursor),
        })
    }
}

pub(super) async fn bulk_insert(
    exec: &PgExec,
    bulk: &NewBulk,
    cursor: TaskId,
) -> Result<(), StoreError> {
    let ids: Option<Vec<Uuid>> = bulk
        .ids
        .as_ref()
        .map(|ids| ids.iter().map(|id| id.0).collect());
    sqlx::query(
        "INSERT INTO bulk_actions (id, action, ids, filter, status, cursor, actor, created_at) \
         VALUES ($1, $2, $3, $4, 'running', $5, $6, $7)",
    )
    .bind(bulk.id.0)
    .bind(bulk.action.as_str())
    .bind(ids)
    .bind(sqlx::types::Json(&bulk.filter))
    .bind(cursor.0)
    .bind(&bulk.actor)
    .bind(bulk.created_at)
    .execute(exec)
    .await
    .map_err(err)?;
    Ok(())
}

pub(super) async fn bulk_get(exec: &PgExec, id: BulkId) -> Result<Option<BulkJob>, StoreError> {
    let sql = format!("SELECT {BULK_COLUMNS} FROM bulk_actions WHERE id = $1");
    let row: Option<BulkDbRow> = sqlx::query_as(&sql)
        .bind(id.0)
        .fetch_optional(exec)
        .await
        .map_err(err)?;
    Ok(row.map(BulkRow::try_from).transpose()?.map(|r| r.job))
}

pub(super) async fn bulk_list(exec: &PgExec, limit: i64) -> Result<Vec<BulkJob>, StoreError> {
    let sql = format!("SELECT {BULK_COLUMNS} FROM bulk_actions ORDER BY id DESC LIMIT $1");
    let rows: Vec<BulkDbRow> = sqlx::query_as(&sql)
        .bind(limit)
        .fetch_all(exec)
        .await
        .map_err(err)?;
    rows.into_iter()
        .map(|r| BulkRow::try_from(r).map(|r| r.job))
        .collect()
}

pub(super) async fn bulk_take(
    exec: &PgExec,
    holder: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Option<BulkRow>, StoreError> {
    let sql = format!(
        "UPDATE bulk_actions SET holder = $1, lease_until = $3 \
         WHERE id = (SELECT id FROM bulk_actions WHERE status = 'running' \
             AND (holder IS NULL OR holder = $1 OR lease_until < $2) \
             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING {BULK_COLUMNS}"
    );
    let row: Option<BulkDbRow> = sqlx::query_as(&sql)
        .bind(holder)
        .bind(now)
        .bind(until)
        .fetch_optional(exec)
        .await
        .map_err(err)?;
    row.map(BulkRow::try_from).transpose()
}

from_row! { sqlx::postgres::PgRow =>
struct AuditRow {
    id: i64,
    at: DateTime<Utc>,
    actor: String,
    tenant: Option<String>,
    client_ip: Option<String>,
    action: String,
    target: Option<String>,
    detail: Option<serde_json::Value>,
    count: Option<i64>,
}}

pub(super) async fn audit_insert(exec: &PgExec, e: &AuditEntry) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, tenant, client_ip, action, target, detail, count) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(e.at)
    .bind(&e.actor)
    .bind(&e.tenant)
    .bind(&e.client_ip)
    .bind(&e.action)
    .bind(&e.target)
    .bind(&e.detail)
    .bind(e.count)
    .execute(exec)
    .await
    .map_err(err)?;
    Ok(())
}

pub(super) async fn audit_list(
    exec: &PgExec,
    p: &AuditListParams,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut q = QueryBuilder::new(
        "SELECT id, at, actor, tenant, client_ip, action, target, detail, count \
         FROM audit_log WHERE TRUE",
    );
    if let Some(before) = p.before {
        q.push(" AND id < ").push_bind(before);
    }
    if let Some(action) = &p.action {
        q.push(" AND action = ").push_bind(action.clone());
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(p.limit);
    let rows: Vec<AuditRow> = q.build_query_as().fetch_all(exec).await.map_err(err)?;
    Ok(rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            at: r.at,
            actor: r.actor,
            tenant: r.tenant,
            client_ip: r.client_ip,
            action: r.action,
            target: r.target,
            detail: r.detail,
            count: r.count,
        })
        .collect())
}

impl PostgresTx {
    pub(super) async fn delete_finished(&mut self, ids: &[TaskId]) -> Result<u64, StoreError> {
        let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        let done = sqlx::query(
            "DELETE FROM tasks_finished f WHERE f.id = ANY($1) \
               AND NOT EXISTS (SELECT 1 FROM workflow_steps s WHERE s.task_id = f.id)",
        )
        .bind(ids)
        .execute(self.exec())
        .await
        .map_err(err)?;
        Ok(done.rows_affected())
    }

    pub(super) async fn advance_bulk(
        &mut self,
        id: BulkId,
        holder: &str,
        p: &BulkProgress,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE bulk_actions SET cursor = $1, processed = processed + $2, \
                 changed = changed + $3, skipped = skipped + $4, \
                 status = CASE WHEN $5 THEN 'done' ELSE status END, \
                 finished_at = CASE WHEN $5 THEN $6 ELSE finished_at END, \
                 holder = CASE WHEN $5 THEN NULL ELSE holder END \
             WHERE id = $7 AND holder = $8 AND status = 'running'",
        )
        .bind(p.cursor.0)
        .bind(p.processed)
        .bind(p.changed)
        .bind(p.skipped)
        .bind(p.done)
        .bind(p.now)
        .bind(id.0)
        .bind(holder)
        .execute(self.exec())
        .await
        .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }
}
