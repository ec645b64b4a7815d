//! A workflow's graph on SQLite, inside the writer's transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{QueryBuilder, SqlitePool};
use weir_core::{
    NewStep, NewWorkflow, StoreError, TaskId, TaskState, TaskType, Workflow, WorkflowId,
    WorkflowListParams, WorkflowStatus, WorkflowStep,
};
use weir_store::{
    EndedStep, NamedStep, ParentOutcome, ReadyStep, StepCancel, StepChild, WorkflowCounts,
    WorkflowTx,
};

use super::err;
use super::rows::{millis, task_id, time};
use super::tx::SqliteTx;

fn workflow_id(text: &str) -> Result<WorkflowId, StoreError> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("workflow id: {e}")))
}

fn state(text: &str) -> Result<TaskState, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

pub(super) fn json_ids(ids: &[TaskId]) -> String {
    serde_json::to_string(&ids.iter().map(|id| id.to_string()).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into())
}

#[async_trait]
impl WorkflowTx for SqliteTx {
    async fn workflow_row_insert(&mut self, w: &NewWorkflow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workflows (id, name, tenant, status, steps_total, steps_live, created_at) \
             VALUES (?, ?, ?, 'running', 0, 0, ?)",
        )
        .bind(w.id.to_string())
        .bind(&w.name)
        .bind(&w.tenant)
        .bind(millis(w.now))
        .execute(&mut *self.tx)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn steps_insert(
        &mut self,
        workflow: WorkflowId,
        steps: &[NewStep],
        edges: &[(TaskId, TaskId)],
        added_by: Option<TaskId>,
    ) -> Result<(), StoreError> {
        let rows: Vec<_> = steps
            .iter()
            .map(|s| (&s.task, s.initial_state().as_str()))
            .collect();
        super::insert::task_rows(&mut self.tx, &rows).await?;
        let first: i64 = sqlx::query_scalar("SELECT steps_total FROM workflows WHERE id = ?")
            .bind(workflow.to_string())
            .fetch_one(&mut *self.tx)
            .await
            .map_err(err)?;
        for (position, s) in (first..).zip(steps) {
            sqlx::query(
                "INSERT INTO workflow_steps (task_id, workflow_id, step_id, position, depends_on, \
                     on_parent_failure, with_parent_results, pending_parents, added_by) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(s.task.id.to_string())
            .bind(workflow.to_string())
            .bind(&s.step_id)
            .bind(position)
            .bind(serde_json::to_string(&s.depends_on).unwrap_or_else(|_| "[]".into()))
            .bind(s.on_parent_failure.as_str())
            .bind(s.with_parent_results)
            .bind(s.depends_on.len() as i64)
            .bind(added_by.map(|t| t.to_string()))
            .execute(&mut *self.tx)
            .await
            .map_err(err)?;
        }
        for (parent, child) in edges {
            sqlx::query("INSERT INTO workflow_edges (parent, child) VALUES (?, ?)")
                .bind(parent.to_string())
                .bind(child.to_string())
                .execute(&mut *self.tx)
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    async fn task_held(&mut self, task: TaskId, lease_token: i64) -> Result<bool, StoreError> {
        // The writer's transaction is the only one: nothing ends the task
        // before it commits.
        let row: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM tasks WHERE id = ? AND state = 'running' AND lease_token = ?",
        )
        .bind(task.to_string())
        .bind(lease_token)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(err)?;
        Ok(row.is_some())
    }

    async fn steps_named(
        &mut self,
        workflow: WorkflowId,
        ids: &[String],
    ) -> Result<Vec<NamedStep>, StoreError> {
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT step_id, task_id, added_by FROM workflow_steps \
             WHERE workflow_id = ? AND step_id IN (SELECT value FROM json_each(?))",
        )
        .bind(workflow.to_string())
        .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|(step_id, task, added_by)| {
                Ok(NamedStep {
                    step_id,
                    task: task_id(&task)?,
                    added_by: added_by.as_deref().map(task_id).transpose()?,
                })
            })
            .collect()
    }

    async fn step_adopt(
        &mut self,
        child: TaskId,
        parents: &[(String, TaskId)],
    ) -> Result<(), StoreError> {
        for (_, parent) in parents {
            sqlx::query("INSERT INTO workflow_edges (parent, child) VALUES (?, ?)")
                .bind(parent.to_string())
                .bind(child.to_string())
                .execute(&mut *self.tx)
                .await
                .map_err(err)?;
        }
        let depends_on: String =
            sqlx::query_scalar("SELECT depends_on FROM workflow_steps WHERE task_id = ?")
                .bind(child.to_string())
                .fetch_one(&mut *self.tx)
                .await
                .map_err(err)?;
        let mut names: Vec<String> = serde_json::from_str(&depends_on)
            .map_err(|e| StoreError::Corrupt(format!("depends_on: {e}")))?;
        names.extend(parents.iter().map(|(id, _)| id.clone()));
        sqlx::query(
            "UPDATE workflow_steps SET pending_parents = pending_parents + ?, depends_on = ? \
             WHERE task_id = ?",
        )
        .bind(parents.len() as i64)
        .bind(serde_json::to_string(&names).unwrap_or_else(|_| "[]".into()))
        .bind(child.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn workflow_grow(
        &mut self,
        workflow: WorkflowId,
        n: i64,
    ) -> Result<WorkflowCounts, StoreError> {
        let row: (i64, i64, i64, bool) = sqlx::query_as(
            "UPDATE workflows SET steps_total = steps_total + ?, steps_live = steps_live + ? \
             WHERE id = ? \
             RETURNING steps_total, steps_live, steps_succeeded, cancel_requested",
        )
        .bind(n)
        .bind(n)
        .bind(workflow.to_string())
        .fetch_one(&mut *self.tx)
        .await
        .map_err(err)?;
        Ok(WorkflowCounts::from_row(row))
    }

    async fn steps_end(
        &mut self,
        ended: &[(TaskId, TaskState)],
    ) -> Result<Vec<EndedStep>, StoreError> {
        let mut steps = Vec::new();
        for (task, end) in ended {
            let row: Option<(String, String, Option<f64>)> = sqlx::query_as(
                "UPDATE workflow_steps SET ended = ? WHERE task_id = ? AND ended IS NULL \
                 RETURNING workflow_id, step_id, \
                     CASE WHEN depends_on <> '[]' THEN \
                         (SELECT (t.started_at - t.run_at) / 1000.0 FROM tasks t \
                          WHERE t.id = workflow_steps.task_id AND t.attempts = 1) \
                     END",
            )
            .bind(end.as_str())
            .bind(task.to_string())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(err)?;
            if let Some((workflow, step_id, start_wait)) = row {
                steps.push(EndedStep {
                    task: *task,
                    workflow: workflow_id(&workflow)?,
                    step_id,
                    state: *end,
                    start_wait,
                });
            }
        }
        Ok(steps)
    }

    async fn step_children(&mut self, parents: &[TaskId]) -> Result<Vec<StepChild>, StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT e.parent, e.child, s.on_parent_failure FROM workflow_edges e \
             JOIN workflow_steps s ON s.task_id = e.child \
             WHERE e.parent IN (SELECT value FROM json_each(?)) AND s.ended IS NULL",
        )
        .bind(json_ids(parents))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|(parent, child, policy)| {
                Ok(StepChild {
                    parent: task_id(&parent)?,
                    child: task_id(&child)?,
                    on_parent_failure: policy.parse().map_err(StoreError::Corrupt)?,
                })
            })
            .collect()
    }

    async fn steps_parents_ended(
        &mut self,
        counts: &[(TaskId, i32)],
    ) -> Result<Vec<ReadyStep>, StoreError> {
        let mut ready = Vec::new();
        for (task, n) in counts {
            let row: Option<(i64, bool)> = sqlx::query_as(
                "UPDATE workflow_steps SET pending_parents = pending_parents - ? \
                 WHERE task_id = ? AND ended IS NULL \
                 RETURNING pending_parents, with_parent_results",
            )
            .bind(n)
            .bind(task.to_string())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(err)?;
            if let Some((0, with_parent_results)) = row {
                ready.push(ReadyStep {
                    task: *task,
                    with_parent_results,
                });
            }
        }
        Ok(ready)
    }

    async fn step_input(&mut self, task: TaskId) -> Result<Value, StoreError> {
        let text: String = sqlx::query_scalar("SELECT input FROM tasks WHERE id = ?")
            .bind(task.to_string())
            .fetch_one(&mut *self.tx)
            .await
            .map_err(err)?;
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("task input: {e}")))
    }

    async fn step_parent_outcomes(
        &mut self,
        task: TaskId,
    ) -> Result<Vec<ParentOutcome>, StoreError> {
        let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT s.step_id, t.state, t.result, t.error FROM workflow_edges e \
             JOIN workflow_steps s ON s.task_id = e.parent \
             JOIN tasks t ON t.id = e.parent \
             WHERE e.child = ? ORDER BY s.position",
        )
        .bind(task.to_string())
        .fetch_all(&mut *self.tx)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|(step_id, s, result, error)| {
                Ok(ParentOutcome {
                    step_id,
                    state: state(&s)?,
                    result: result
                        .map(|r| serde_json::from_str(&r))
                        .transpose()
                        .map_err(|e| StoreError::Corrupt(format!("task result: {e}")))?,
                    error,
                })
            })
            .collect()
    }

    async fn steps_queue(
        &mut self,
        steps: &[(TaskId, Option<Value>)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for (task, input) in steps {
            sqlx::query(
                "UPDATE tasks SET state = 'queued', run_at = MAX(run_at, ?), \
                     input = COALESCE(?, input) \
                 WHERE id = ? AND state = 'waiting'",
            )
            .bind(millis(now))
            .bind(input.as_ref().map(|v| v.to_string()))
            .bind(task.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(err)?;
        }
        Ok(())
    }
    async fn steps_cancel(
        &mut self,
        cancels: &[StepCancel],
        now: DateTime<Utc>,
    ) -> Result<Vec<EndedStep>, StoreError> {
        let mut ended = Vec::with_capacity(cancels.len());
        for c in cancels {
            sqlx::query(
                "UPDATE tasks SET state = 'cancelled', error = ?, completed_at = ?, \
                     lease_token = lease_token + 1, lease_expires_at = NULL \
                 WHERE id = ? AND state = 'waiting'",
            )
            .bind(&c.error)
            .bind(millis(now))
            .bind(c.task.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(err)?;
            let row: Option<(String, String)> = sqlx::query_as(
                "UPDATE workflow_steps SET ended = 'cancelled', cancelled_by = ? \
                 WHERE task_id = ? AND ended IS NULL RETURNING workflow_id, step_id",
            )
            .bind(c.parent.to_string())
            .bind(c.task.to_string())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(err)?;
            if let Some((workflow, step_id)) = row {
                ended.push(EndedStep {
                    task: c.task,
                    workflow: workflow_id(&workflow)?,
                    step_id,
                    state: TaskState::Cancelled,
                    start_wait: None,
                });
            }
        }
        Ok(ended)
    }

    async fn workflows_count_ended(
        &mut self,
        ended: &[(WorkflowId, i64, i64)],
    ) -> Result<Vec<(WorkflowId, WorkflowCounts)>, StoreError> {
        let mut counts = Vec::with_capacity(ended.len());
        for (workflow, ended, succeeded) in ended {
            let row: (i64, i64, i64, bool) = sqlx::query_as(
                "UPDATE workflows SET steps_live = steps_live - ?, \
                     steps_succeeded = steps_succeeded + ? \
                 WHERE id = ? \
                 RETURNING steps_total, steps_live, steps_succeeded, cancel_requested",
            )
            .bind(ended)
            .bind(succeeded)
            .bind(workflow.to_string())
            .fetch_one(&mut *self.tx)
            .await
            .map_err(err)?;
            counts.push((*workflow, WorkflowCounts::from_row(row)));
        }
        Ok(counts)
    }
    async fn workflows_finish(
        &mut self,
        finished: &[(WorkflowId, WorkflowStatus)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for (workflow, status) in finished {
            sqlx::query("UPDATE workflows SET status = ?, finished_at = ? WHERE id = ?")
                .bind(status.as_str())
                .bind(millis(now))
                .bind(workflow.to_string())
                .execute(&mut *self.tx)
                .await
                .map_err(err)?;
        }
        Ok(())
    }
    async fn step_reopen(&mut self, task: TaskId) -> Result<Option<WorkflowId>, StoreError> {
        let row: Option<String> = sqlx::query_scalar(
            "UPDATE workflow_steps SET ended = NULL, cancelled_by = NULL \
             WHERE task_id = ? AND ended IS NOT NULL RETURNING workflow_id",
        )
        .bind(task.to_string())
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(err)?;
        row.as_deref().map(workflow_id).transpose()
    }

    async fn steps_cancelled_by(&mut self, parent: TaskId) -> Result<Vec<TaskId>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT task_id FROM workflow_steps WHERE cancelled_by = ? AND ended = 'cancelled'",
        )
        .bind(parent.to_string())
        .fetch_all(&mut *self.tx)
        .await
        .map_err(err)?;
        rows.iter().map(|id| task_id(id)).collect()
    }

    async fn step_parents(
        &mut self,
        task: TaskId,
    ) -> Result<Vec<(TaskId, Option<TaskState>)>, StoreError> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT e.parent, s.ended FROM workflow_edges e \
             JOIN workflow_steps s ON s.task_id = e.parent WHERE e.child = ?",
        )
        .bind(task.to_string())
        .fetch_all(&mut *self.tx)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|(id, ended)| Ok((task_id(&id)?, ended.as_deref().map(state).transpose()?)))
            .collect()
    }

    async fn step_restore(
        &mut self,
        task: TaskId,
        pending: i32,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET state = 'waiting', error = NULL, completed_at = NULL, \
                 run_at = MAX(run_at, ?) \
             WHERE id = ? AND state = 'cancelled'",
        )
        .bind(millis(now))
        .bind(task.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(err)?;
        sqlx::query(
            "UPDATE workflow_steps SET ended = NULL, cancelled_by = NULL, pending_parents = ? \
             WHERE task_id = ?",
        )
        .bind(pending)
        .bind(task.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn workflow_reopen(
        &mut self,
        workflow: WorkflowId,
        steps: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE workflows SET steps_live = steps_live + ?, status = 'running', \
                 finished_at = NULL, cancel_requested = 0 WHERE id = ?",
        )
        .bind(steps)
        .bind(workflow.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn workflow_of_task(&mut self, task: TaskId) -> Result<Option<WorkflowId>, StoreError> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT workflow_id FROM workflow_steps WHERE task_id = ?")
                .bind(task.to_string())
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(err)?;
        row.as_deref().map(workflow_id).transpose()
    }

    async fn workflow_cancel_request(
        &mut self,
        workflow: WorkflowId,
    ) -> Result<Option<Vec<TaskId>>, StoreError> {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM workflows WHERE id = ?")
                .bind(workflow.to_string())
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(err)?;
        match status.as_deref() {
            None => return Ok(None),
            Some("running") => {}
            Some(_) => return Ok(Some(Vec::new())),
        }
        sqlx::query("UPDATE workflows SET cancel_requested = 1 WHERE id = ?")
            .bind(workflow.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(err)?;
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT task_id FROM workflow_steps WHERE workflow_id = ? AND ended IS NULL",
        )
        .bind(workflow.to_string())
        .fetch_all(&mut *self.tx)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|id| task_id(id))
            .collect::<Result<_, _>>()
            .map(Some)
    }
}

from_row! { sqlx::sqlite::SqliteRow =>
struct WorkflowRow {
    id: String,
    name: Option<String>,
    tenant: Option<String>,
    status: String,
    created_at: i64,
    finished_at: Option<i64>,
}}

impl WorkflowRow {
    fn into_workflow(self, steps: Vec<WorkflowStep>) -> Result<Workflow, StoreError> {
        Ok(Workflow {
            id: workflow_id(&self.id)?,
            name: self.name,
            status: self.status.parse().map_err(StoreError::Corrupt)?,
            created_at: time(self.created_at)?,
            finished_at: self.finished_at.map(time).transpose()?,
            tenant: self.tenant,
            steps,
        })
    }
}

const WORKFLOW_COLUMNS: &str = "id, name, tenant, status, created_at, finished_at";

/// A workflow without its steps.
pub(super) async fn summary(
    reader: &SqlitePool,
    id: WorkflowId,
) -> Result<Option<Workflow>, StoreError> {
    let sql = format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE id = ?");
    let row: Option<WorkflowRow> = sqlx::query_as(&sql)
        .bind(id.to_string())
        .fetch_optional(reader)
        .await
        .map_err(err)?;
    row.map(|r| r.into_workflow(Vec::new())).transpose()
}

/// A workflow with its steps, in the order they were submitted.
pub(super) async fn get(
    reader: &SqlitePool,
    id: WorkflowId,
) -> Result<Option<Workflow>, StoreError> {
    let Some(mut workflow) = summary(reader, id).await? else {
        return Ok(None);
    };
    from_row! { sqlx::sqlite::SqliteRow =>
    struct StepRow {
        step_id: String,
        task_id: String,
        kind: String,
        state: String,
        depends_on: String,
        attempts: i32,
        result: Option<String>,
        error: Option<String>,
        started_at: Option<i64>,
        completed_at: Option<i64>,
    }}
    let steps: Vec<StepRow> = sqlx::query_as(
        "SELECT s.step_id, s.task_id, t.kind, t.state, s.depends_on, t.attempts, t.result, \
             t.error, t.started_at, t.completed_at \
         FROM workflow_steps s JOIN tasks t ON t.id = s.task_id \
         WHERE s.workflow_id = ? ORDER BY s.position",
    )
    .bind(id.to_string())
    .fetch_all(reader)
    .await
    .map_err(err)?;
    let corrupt = |what: &str, e: serde_json::Error| StoreError::Corrupt(format!("{what}: {e}"));
    workflow.steps = steps
        .into_iter()
        .map(|r| {
            Ok(WorkflowStep {
                id: r.step_id,
                task_id: task_id(&r.task_id)?,
                kind: TaskType::from_stored(r.kind),
                status: state(&r.state)?,
                depends_on: serde_json::from_str(&r.depends_on)
                    .map_err(|e| corrupt("depends_on", e))?,
                attempts: r.attempts,
                result: r
                    .result
                    .map(|v| serde_json::from_str(&v))
                    .transpose()
                    .map_err(|e| corrupt("task result", e))?,
                error: r.error,
                started_at: r.started_at.map(time).transpose()?,
                completed_at: r.completed_at.map(time).transpose()?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(workflow))
}

/// The workflow and step id of each of these tasks that is a step.
pub(super) async fn steps_of_tasks(
    reader: &SqlitePool,
    tasks: &[TaskId],
) -> Result<Vec<(TaskId, WorkflowId, String)>, StoreError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT task_id, workflow_id, step_id FROM workflow_steps \
         WHERE task_id IN (SELECT value FROM json_each(?))",
    )
    .bind(json_ids(tasks))
    .fetch_all(reader)
    .await
    .map_err(err)?;
    rows.into_iter()
        .map(|(t, w, s)| Ok((task_id(&t)?, workflow_id(&w)?, s)))
        .collect()
}

/// Workflows matching the filters, newest first, without their steps.
pub(super) async fn list(
    reader: &SqlitePool,
    p: &WorkflowListParams,
) -> Result<Vec<Workflow>, StoreError> {
    let mut q = QueryBuilder::new(format!(
        "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE 1 = 1"
    ));
    if let Some(status) = p.status {
        q.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(name) = &p.name {
        q.push(" AND name = ").push_bind(name.clone());
    }
    if let Some(tenant) = &p.tenant {
        q.push(" AND tenant = ").push_bind(tenant.clone());
    }
    if let Some(before) = p.before {
        q.push(" AND id < ").push_bind(before.to_string());
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(p.limit);
    let rows: Vec<WorkflowRow> = q.build_query_as().fetch_all(reader).await.map_err(err)?;
    rows.into_iter()
        .map(|r| r.into_workflow(Vec::new()))
        .collect()
}

/// Up to `limit` workflows finished before `before` (ms), with their steps
/// and edges.
pub(super) async fn prune(writer: &SqlitePool, before: i64, limit: i64) -> Result<u64, StoreError> {
    let mut tx = writer.begin().await.map_err(err)?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM workflows WHERE finished_at < ? ORDER BY finished_at LIMIT ?",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
    .map_err(err)?;
    let ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
    for sql in [
        "DELETE FROM workflow_edges WHERE child IN (SELECT task_id FROM workflow_steps \
             WHERE workflow_id IN (SELECT value FROM json_each(?)))",
        "DELETE FROM workflow_steps WHERE workflow_id IN (SELECT value FROM json_each(?))",
    ] {
        sqlx::query(sql)
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
    }
    let deleted = sqlx::query("DELETE FROM workflows WHERE id IN (SELECT value FROM json_each(?))")
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
    tx.commit().await.map_err(err)?;
    Ok(deleted)
}
