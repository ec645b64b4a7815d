//! What operators read and steer on SQLite: the task browser's filtered
//! pages, bulk actions, the audit log.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use weir_core::{
    AuditEntry, AuditListParams, BulkId, BulkJob, NewBulk, StoreError, Task, TaskFilter, TaskId,
    TaskListParams, TaskSort, TaskState,
};
use weir_store::{BulkProgress, BulkRow};

use super::err;
use super::rows::{corrupt, decode, millis, task_id, time, TaskRow, TASK_COLUMNS};
use super::tx::SqliteTx;
use super::workflows::json_ids;

/// ` AND …` for each field of the filter set.
fn push_filter(q: &mut QueryBuilder<'_, Sqlite>, f: &TaskFilter) {
    if let Some(state) = f.state {
        q.push(" AND state = ").push_bind(state.as_str());
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
            .push_bind(workflow.to_string())
            .push(")");
    }
    for (column, op, at) in [
        ("created_at", ">=", f.created_after),
        ("created_at", "<", f.created_before),
        ("completed_at", ">=", f.finished_after),
        ("completed_at", "<", f.finished_before),
    ] {
        if let Some(at) = at {
            q.push(format!(" AND {column} {op} ")).push_bind(millis(at));
        }
    }
    if let Some(text) = &f.error {
        // SQLite's LIKE ignores ASCII case.
        q.push(" AND error LIKE ")
            .push_bind(crate::filter::like_pattern(text))
            .push(" ESCAPE '\\'");
    }
}

pub(super) async fn task_list(
    reader: &SqlitePool,
    p: &TaskListParams,
) -> Result<Vec<Task>, StoreError> {
    let mut q = QueryBuilder::new(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1 = 1"));
    push_filter(&mut q, &p.filter);
    match p.sort {
        TaskSort::Created => {
            if let Some(after) = p.after {
                q.push(" AND id < ").push_bind(after.id.to_string());
            }
            q.push(" ORDER BY id DESC");
        }
        TaskSort::Finished => {
            q.push(" AND completed_at IS NOT NULL");
            if let Some(after) = p.after {
                let at = after.finished_at.map_or(i64::MAX, millis);
                q.push(" AND (completed_at, id) < (")
                    .push_bind(at)
                    .push(", ")
                    .push_bind(after.id.to_string())
                    .push(")");
            }
            q.push(" ORDER BY completed_at DESC, id DESC");
        }
    }
    q.push(" LIMIT ").push_bind(p.limit);
    let rows: Vec<TaskRow> = q.build_query_as().fetch_all(reader).await.map_err(err)?;
    decode(rows)
}

pub(super) async fn task_ids_matching(
    reader: &SqlitePool,
    filter: &TaskFilter,
    states: &[TaskState],
    among: Option<&[TaskId]>,
    before: TaskId,
    limit: i64,
) -> Result<Vec<TaskId>, StoreError> {
    let mut q = QueryBuilder::new("SELECT id FROM tasks WHERE id < ");
    q.push_bind(before.to_string());
    push_filter(&mut q, filter);
    q.push(" AND state IN (");
    let mut states_list = q.separated(", ");
    for state in states {
        states_list.push_bind(state.as_str());
    }
    q.push(")");
    if let Some(among) = among {
        q.push(" AND id IN (SELECT value FROM json_each(")
            .push_bind(json_ids(among))
            .push("))");
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
    let ids: Vec<String> = q
        .build_query_scalar()
        .fetch_all(reader)
        .await
        .map_err(err)?;
    ids.iter().map(|id| task_id(id)).collect()
}

const BULK_COLUMNS: &str = "id, action, ids, ids_count, filter, status, cursor, processed, \
    changed, skipped, actor, created_at, finished_at";

from_row! { sqlx::sqlite::SqliteRow =>
struct BulkDbRow {
    id: String,
    action: String,
    ids: Option<String>,
    ids_count: Option<i64>,
    filter: String,
    status: String,
    cursor: String,
    processed: i64,
    changed: i64,
    skipped: i64,
    actor: String,
    created_at: i64,
    finished_at: Option<i64>,
}}

impl TryFrom<BulkDbRow> for BulkRow {
    type Error = StoreError;
    fn try_from(r: BulkDbRow) -> Result<Self, StoreError> {
        let ids = r
            .ids
            .map(|text| {
                let ids: Vec<String> =
                    serde_json::from_str(&text).map_err(|e| corrupt("bulk ids", e))?;
                ids.iter()
                    .map(|id| task_id(id))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(BulkRow {
            job: BulkJob {
                id: r.id.parse().map_err(|e| corrupt("bulk id", e))?,
                action: r.action.parse().map_err(StoreError::Corrupt)?,
                status: r.status,
                ids: r.ids_count,
                filter: serde_json::from_str(&r.filter).map_err(|e| corrupt("bulk filter", e))?,
                processed: r.processed,
                changed: r.changed,
                skipped: r.skipped,
                actor: r.actor,
                created_at: time(r.created_at)?,
                finished_at: r.finished_at.map(time).transpose()?,
            },
            ids,
            cursor: task_id(&r.cursor)?,
        })
    }
}

pub(super) async fn bulk_insert(
    writer: &SqlitePool,
    bulk: &NewBulk,
    cursor: TaskId,
) -> Result<(), StoreError> {
    let filter = serde_json::to_string(&bulk.filter).map_err(|e| corrupt("bulk filter", e))?;
    sqlx::query(
        "INSERT INTO bulk_actions (id, action, ids, ids_count, filter, status, cursor, actor, created_at) \
         VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
    )
    .bind(bulk.id.to_string())
    .bind(bulk.action.as_str())
    .bind(bulk.ids.as_deref().map(json_ids))
    .bind(bulk.ids.as_ref().map(|ids| ids.len() as i64))
    .bind(filter)
    .bind(cursor.to_string())
    .bind(&bulk.actor)
    .bind(millis(bulk.created_at))
    .execute(writer)
    .await
    .map_err(err)?;
    Ok(())
}

pub(super) async fn bulk_get(
    reader: &SqlitePool,
    id: BulkId,
) -> Result<Option<BulkJob>, StoreError> {
    let sql = format!("SELECT {BULK_COLUMNS} FROM bulk_actions WHERE id = ?");
    let row: Option<BulkDbRow> = sqlx::query_as(&sql)
        .bind(id.to_string())
        .fetch_optional(reader)
        .await
        .map_err(err)?;
    Ok(row.map(BulkRow::try_from).transpose()?.map(|r| r.job))
}

pub(super) async fn bulk_list(reader: &SqlitePool, limit: i64) -> Result<Vec<BulkJob>, StoreError> {
    let sql = format!("SELECT {BULK_COLUMNS} FROM bulk_actions ORDER BY id DESC LIMIT ?");
    let rows: Vec<BulkDbRow> = sqlx::query_as(&sql)
        .bind(limit)
        .fetch_all(reader)
        .await
        .map_err(err)?;
    rows.into_iter()
        .map(|r| BulkRow::try_from(r).map(|r| r.job))
        .collect()
}

pub(super) async fn bulk_take(
    writer: &SqlitePool,
    holder: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Option<BulkRow>, StoreError> {
    let sql = format!(
        "UPDATE bulk_actions SET holder = ?1, lease_until = ?3 \
         WHERE id = (SELECT id FROM bulk_actions WHERE status = 'running' \
             AND (holder IS NULL OR holder = ?1 OR lease_until < ?2) ORDER BY id LIMIT 1) \
         RETURNING {BULK_COLUMNS}"
    );
    let row: Option<BulkDbRow> = sqlx::query_as(&sql)
        .bind(holder)
        .bind(millis(now))
        .bind(millis(until))
        .fetch_optional(writer)
        .await
        .map_err(err)?;
    row.map(BulkRow::try_from).transpose()
}

from_row! { sqlx::sqlite::SqliteRow =>
struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    tenant: Option<String>,
    client_ip: Option<String>,
    action: String,
    target: Option<String>,
    detail: Option<String>,
    count: Option<i64>,
}}

pub(super) async fn audit_insert(writer: &SqlitePool, e: &AuditEntry) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, tenant, client_ip, action, target, detail, count) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(millis(e.at))
    .bind(&e.actor)
    .bind(&e.tenant)
    .bind(&e.client_ip)
    .bind(&e.action)
    .bind(&e.target)
    .bind(e.detail.as_ref().map(|d| d.to_string()))
    .bind(e.count)
    .execute(writer)
    .await
    .map_err(err)?;
    Ok(())
}

pub(super) async fn audit_list(
    reader: &SqlitePool,
    p: &AuditListParams,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut q = QueryBuilder::new(
        "SELECT id, at, actor, tenant, client_ip, action, target, detail, count \
         FROM audit_log WHERE 1 = 1",
    );
    if let Some(before) = p.before {
        q.push(" AND id < ").push_bind(before);
    }
    if let Some(action) = &p.action {
        q.push(" AND action = ").push_bind(action.clone());
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(p.limit);
    let rows: Vec<AuditRow> = q.build_query_as().fetch_all(reader).await.map_err(err)?;
    rows.into_iter()
        .map(|r| {
            Ok(AuditEntry {
                id: r.id,
                at: time(r.at)?,
                actor: r.actor,
                tenant: r.tenant,
                client_ip: r.client_ip,
                action: r.action,
                target: r.target,
                detail: r
                    .detail
                    .map(|d| serde_json::from_str(&d).map_err(|e| corrupt("audit detail", e)))
                    .transpose()?,
                count: r.count,
            })
        })
        .collect()
}

impl SqliteTx {
    pub(super) async fn delete_finished(&mut self, ids: &[TaskId]) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(?)) \
               AND state IN ('succeeded', 'dead', 'cancelled') \
               AND NOT EXISTS (SELECT 1 FROM workflow_steps s WHERE s.task_id = tasks.id)",
        )
        .bind(json_ids(ids))
        .execute(&mut *self.tx)
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
            "UPDATE bulk_actions SET cursor = ?, processed = processed + ?, \
                 changed = changed + ?, skipped = skipped + ?, \
                 status = CASE WHEN ? THEN 'done' ELSE status END, \
                 finished_at = CASE WHEN ? THEN ? ELSE finished_at END, \
                 holder = CASE WHEN ? THEN NULL ELSE holder END \
             WHERE id = ? AND holder = ? AND status = 'running'",
        )
        .bind(p.cursor.to_string())
        .bind(p.processed)
        .bind(p.changed)
        .bind(p.skipped)
        .bind(p.done)
        .bind(p.done)
        .bind(millis(p.now))
        .bind(p.done)
        .bind(id.to_string())
        .bind(holder)
        .execute(&mut *self.tx)
        .await
        .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }
}
