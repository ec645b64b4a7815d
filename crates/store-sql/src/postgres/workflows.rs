//! A workflow's graph on PostgreSQL, inside one transaction. Rows go by
//! arrays (`unnest`), so a step with thousands of children is a handful of
//! statements. Finished steps live in `tasks_finished` like every task.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::QueryBuilder;
use uuid::Uuid;
use weir_core::{
    NewStep, NewWorkflow, StoreError, TaskId, TaskState, TaskType, Workflow, WorkflowId,
    WorkflowListParams, WorkflowStatus, WorkflowStep,
};
use weir_store::{
    EndedStep, NamedStep, ParentOutcome, ReadyStep, StepCancel, StepChild, WorkflowCounts,
    WorkflowTx,
};

use super::err;
use super::tx::PostgresTx;

fn state(text: &str) -> Result<TaskState, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

fn uuids(ids: &[TaskId]) -> Vec<Uuid> {
    ids.iter().map(|id| id.0).collect()
}

type EndedRow = (Uuid, Uuid, String, String, Option<f64>);

fn ended_steps(rows: Vec<EndedRow>) -> Result<Vec<EndedStep>, StoreError> {
    rows.into_iter()
        .map(|(task, workflow, step_id, s, start_wait)| {
            Ok(EndedStep {
                task: TaskId(task),
                workflow: WorkflowId(workflow),
                step_id,
                state: state(&s)?,
                start_wait,
            })
        })
        .collect()
}

#[async_trait]
impl WorkflowTx for PostgresTx {
    async fn workflow_row_insert(&mut self, w: &NewWorkflow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workflows (id, name, tenant, status, steps_total, steps_live, created_at) \
             VALUES ($1, $2, $3, 'running', 0, 0, $4)",
        )
        .bind(w.id.0)
        .bind(&w.name)
        .bind(&w.tenant)
        .bind(w.now)
        .execute(self.exec())
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
        super::insert::task_rows(self.exec(), &rows, false).await?;
        sqlx::query(
            "INSERT INTO workflow_steps (task_id, workflow_id, step_id, position, depends_on, \
                 on_parent_failure, with_parent_results, pending_parents, added_by) \
             SELECT t, $1, s, (SELECT steps_total FROM workflows WHERE id = $1) + p, \
                    d, f, r, n, $9 \
             FROM unnest($2::uuid[], $3::text[], $4::int[], $5::jsonb[], $6::text[], \
                         $7::bool[], $8::int[]) AS x(t, s, p, d, f, r, n)",
        )
        .bind(workflow.0)
        .bind(steps.iter().map(|s| s.task.id.0).collect::<Vec<_>>())
        .bind(steps.iter().map(|s| s.step_id.clone()).collect::<Vec<_>>())
        .bind((0..steps.len() as i32).collect::<Vec<_>>())
        .bind(
            steps
                .iter()
                .map(|s| serde_json::json!(s.depends_on))
                .collect::<Vec<_>>(),
        )
        .bind(
            steps
                .iter()
                .map(|s| s.on_parent_failure.as_str().to_string())
                .collect::<Vec<_>>(),
        )
        .bind(
            steps
                .iter()
                .map(|s| s.with_parent_results)
                .collect::<Vec<_>>(),
        )
        .bind(
            steps
                .iter()
                .map(|s| s.depends_on.len() as i32)
                .collect::<Vec<_>>(),
        )
        .bind(added_by.map(|t| t.0))
        .execute(self.exec())
        .await
        .map_err(err)?;
        sqlx::query(
            "INSERT INTO workflow_edges (parent, child) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[])",
        )
        .bind(edges.iter().map(|(p, _)| p.0).collect::<Vec<_>>())
        .bind(edges.iter().map(|(_, c)| c.0).collect::<Vec<_>>())
        .execute(self.exec())
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn task_held(&mut self, task: TaskId, lease_token: i64) -> Result<bool, StoreError> {
        // FOR SHARE: a completion's UPDATE of the row waits for this
        // transaction, so the adder cannot end while its steps are added.
        let row: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM tasks WHERE id = $1 AND state = 'running' AND lease_token = $2 \
             FOR SHARE",
        )
        .bind(task.0)
        .bind(lease_token)
        .fetch_optional(self.exec())
        .await
        .map_err(err)?;
        Ok(row.is_some())
    }

    async fn steps_named(
        &mut self,
        workflow: WorkflowId,
        ids: &[String],
    ) -> Result<Vec<NamedStep>, StoreError> {
        let rows: Vec<(String, Uuid, Option<Uuid>)> = sqlx::query_as(
            "SELECT step_id, task_id, added_by FROM workflow_steps \
             WHERE workflow_id = $1 AND step_id = ANY($2)",
        )
        .bind(workflow.0)
        .bind(ids)
        .fetch_all(self.exec())
        .await
        .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(step_id, task, added_by)| NamedStep {
                step_id,
                task: TaskId(task),
                added_by: added_by.map(TaskId),
            })
            .collect())
    }

    async fn step_adopt(
        &mut self,
        child: TaskId,
        parents: &[(String, TaskId)],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workflow_edges (parent, child) SELECT p, $2 FROM unnest($1::uuid[]) p",
        )
        .bind(parents.iter().map(|(_, t)| t.0).collect::<Vec<_>>())
        .bind(child.0)
        .execute(self.exec())
        .await
        .map_err(err)?;
        sqlx::query(
            "UPDATE workflow_steps SET pending_parents = pending_parents + $2, \
                 depends_on = depends_on || $3 \
             WHERE task_id = $1",
        )
        .bind(child.0)
        .bind(parents.len() as i32)
        .bind(serde_json::json!(parents
            .iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>()))
        .execute(self.exec())
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn workflow_grow(
        &mut self,
        workflow: WorkflowId,
        n: i64,
    ) -> Result<WorkflowCounts, StoreError> {
        let row: (i32, i32, i32, bool) = sqlx::query_as(
            "UPDATE workflows SET steps_total = steps_total + $2, steps_live = steps_live + $2 \
             WHERE id = $1 \
             RETURNING steps_total, steps_live, steps_succeeded, cancel_requested",
        )
        .bind(workflow.0)
        .bind(n as i32)
        .fetch_one(self.exec())
        .await
        .map_err(err)?;
        Ok(WorkflowCounts::from_row(row))
    }

    async fn steps_end(
        &mut self,
        ended: &[(TaskId, TaskState)],
    ) -> Result<Vec<EndedStep>, StoreError> {
        // A step's task has moved to tasks_finished by now.
        let rows: Vec<EndedRow> = sqlx::query_as(
            "UPDATE workflow_steps s SET ended = e.state \
             FROM unnest($1::uuid[], $2::text[]) AS e(id, state) \
             WHERE s.task_id = e.id AND s.ended IS NULL \
             RETURNING s.task_id, s.workflow_id, s.step_id, s.ended, \
                 CASE WHEN s.depends_on <> '[]'::jsonb THEN \
                     (SELECT EXTRACT(EPOCH FROM f.started_at - f.run_at)::float8 \
                      FROM tasks_finished f WHERE f.id = s.task_id AND f.attempts = 1) \
                 END",
        )
        .bind(ended.iter().map(|(id, _)| id.0).collect::<Vec<_>>())
        .bind(
            ended
                .iter()
                .map(|(_, s)| s.as_str().to_string())
                .collect::<Vec<_>>(),
        )
        .fetch_all(self.exec())
        .await
        .map_err(err)?;
        ended_steps(rows)
    }

    async fn step_children(&mut self, parents: &[TaskId]) -> Result<Vec<StepChild>, StoreError> {
        let rows: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
            "SELECT e.parent, e.child, s.on_parent_failure FROM workflow_edges e \
             JOIN workflow_steps s ON s.task_id = e.child \
             WHERE e.parent = ANY($1) AND s.ended IS NULL",
        )
        .bind(uuids(parents))
        .fetch_all(self.exec())
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|(parent, child, policy)| {
                Ok(StepChild {
                    parent: TaskId(parent),
                    child: TaskId(child),
                    on_parent_failure: policy.parse().map_err(StoreError::Corrupt)?,
                })
            })
            .collect()
    }

    async fn steps_parents_ended(
        &mut self,
        counts: &[(TaskId, i32)],
    ) -> Result<Vec<ReadyStep>, StoreError> {
        let rows: Vec<(Uuid, bool, i32)> = sqlx::query_as(
            "UPDATE workflow_steps s SET pending_parents = s.pending_parents - c.n \
             FROM unnest($1::uuid[], $2::int[]) AS c(id, n) \
             WHERE s.task_id = c.id AND s.ended IS NULL \
             RETURNING s.task_id, s.with_parent_results, s.pending_parents",
        )
        .bind(counts.iter().map(|(id, _)| id.0).collect::<Vec<_>>())
        .bind(counts.iter().map(|(_, n)| *n).collect::<Vec<_>>())
        .fetch_all(self.exec())
        .await
        .map_err(err)?;
        Ok(rows
            .into_iter()
            .filter(|(_, _, pending)| *pending == 0)
            .map(|(task, with_parent_results, _)| ReadyStep {
                task: TaskId(task),
                with_parent_results,
            })
            .collect())
    }

    async fn step_input(&mut self, task: TaskId) -> Result<Value, StoreError> {
        sqlx::query_scalar("SELECT input FROM tasks WHERE id = $1")
            .bind(task.0)
            .fetch_one(self.exec())
            .await
            .map_err(err)
    }

    async fn step_parent_outcomes(
        &mut self,
        task: TaskId,
    ) -> Result<Vec<ParentOutcome>, StoreError> {
        let rows: Vec<(String, String, Option<Value>, Option<String>)> = sqlx::query_as(
            "SELECT s.step_id, t.state, t.result, t.error FROM workflow_edges e \
             JOIN workflow_steps s ON s.task_id = e.parent \
             JOIN tasks_finished t ON t.id = e.parent \
             WHERE e.child = $1 ORDER BY s.position",
        )
        .bind(task.0)
        .fetch_all(self.exec())
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|(step_id, s, result, error)| {
                Ok(ParentOutcome {
                    step_id,
                    state: state(&s)?,
                    result,
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
        sqlx::query(
            "UPDATE tasks t SET state = 'queued', run_at = GREATEST(t.run_at, $1), \
                 input = COALESCE(x.input, t.input) \
             FROM unnest($2::uuid[], $3::jsonb[]) AS x(id, input) \
             WHERE t.id = x.id AND t.state = 'waiting'",
        )
        .bind(now)
        .bind(steps.iter().map(|(t, _)| t.0).collect::<Vec<_>>())
        .bind(steps.iter().map(|(_, i)| i.clone()).collect::<Vec<_>>())
        .execute(self.exec())
        .await
        .map_err(err)?;
        self.hints.forget_all();
        Ok(())
    }
    async fn steps_cancel(
        &mut self,
        cancels: &[StepCancel],
        now: DateTime<Utc>,
    ) -> Result<Vec<EndedStep>, StoreError> {
        let tasks: Vec<Uuid> = cancels.iter().map(|c| c.task.0).collect();
        sqlx::query(include_str!("sql/cancel_waiting.sql"))
            .bind(&tasks)
            .bind(cancels.iter().map(|c| c.error.clone()).collect::<Vec<_>>())
            .bind(now)
            .execute(self.exec())
            .await
            .map_err(err)?;
        let rows: Vec<EndedRow> = sqlx::query_as(
            "UPDATE workflow_steps s SET ended = 'cancelled', cancelled_by = c.parent \
             FROM unnest($1::uuid[], $2::uuid[]) AS c(id, parent) \
             WHERE s.task_id = c.id AND s.ended IS NULL \
             RETURNING s.task_id, s.workflow_id, s.step_id, s.ended, NULL::float8",
        )
        .bind(&tasks)
        .bind(cancels.iter().map(|c| c.parent.0).collect::<Vec<_>>())
        .fetch_all(self.exec())
        .await
        .map_err(err)?;
        ended_steps(rows)
    }

    async fn workflows_count_ended(
        &mut self,
        ended: &[(WorkflowId, i64, i64)],
    ) -> Result<Vec<(WorkflowId, WorkflowCounts)>, StoreError> {
        // Rows locked in id order first, so two batches that share
        // workflows cannot each hold one the other waits for.
        let rows: Vec<(Uuid, i32, i32, i32, bool)> = sqlx::query_as(
            "WITH locked AS (SELECT id FROM workflows WHERE id = ANY($1) ORDER BY id FOR UPDATE) \
             UPDATE workflows w SET steps_live = w.steps_live - c.ended, \
                 steps_succeeded = w.steps_succeeded + c.succeeded \
             FROM unnest($1::uuid[], $2::int[], $3::int[]) AS c(id, ended, succeeded) \
             WHERE w.id = c.id AND w.id IN (SELECT id FROM locked) \
             RETURNING w.id, w.steps_total, w.steps_live, w.steps_succeeded, w.cancel_requested",
        )
        .bind(ended.iter().map(|(w, _, _)| w.0).collect::<Vec<_>>())
        .bind(ended.iter().map(|(_, e, _)| *e as i32).collect::<Vec<_>>())
        .bind(ended.iter().map(|(_, _, s)| *s as i32).collect::<Vec<_>>())
        .fetch_all(self.exec())
        .await
        .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(id, total, live, succeeded, cancel)| {
                (
                    WorkflowId(id),
                    WorkflowCounts::from_row((total, live, succeeded, cancel)),
                )
            })
            .collect())
    }
    async fn workflows_finish(
        &mut self,
        finished: &[(WorkflowId, WorkflowStatus)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE workflows w SET status = f.status, finished_at = $1 \
             FROM unnest($2::uuid[], $3::text[]) AS f(id, status) WHERE w.id = f.id",
        )
        .bind(now)
        .bind(finished.iter().map(|(w, _)| w.0).collect::<Vec<_>>())
        .bind(
            finished
                .iter()
                .map(|(_, s)| s.as_str().to_string())
                .collect::<Vec<_>>(),
        )
        .execute(self.exec())
        .await
        .map_err(err)?;
        Ok(())
    }
    async fn step_reopen(&mut self, task: TaskId) -> Result<Option<WorkflowId>, StoreError> {
        let row: Option<Uuid> = sqlx::query_scalar(
            "UPDATE workflow_steps SET ended = NULL, cancelled_by = NULL \
             WHERE task_id = $1 AND ended IS NOT NULL RETURNING workflow_id",
        )
        .bind(task.0)
        .fetch_optional(self.exec())
        .await
        .map_err(err)?;
        Ok(row.map(WorkflowId))
    }

    async fn steps_cancelled_by(&mut self, parent: TaskId) -> Result<Vec<TaskId>, StoreError> {
        let rows: Vec<Uuid> = sqlx::query_scalar(
            "SELECT task_id FROM workflow_steps WHERE cancelled_by = $1 AND ended = 'cancelled'",
        )
        .bind(parent.0)
        .fetch_all(self.exec())
        .await
        .map_err(err)?;
        Ok(rows.into_iter().map(TaskId).collect())
    }

    async fn step_parents(
        &mut self,
        task: TaskId,
    ) -> Result<Vec<(TaskId, Option<TaskState>)>, StoreError> {
        let rows: Vec<(Uuid, Option<String>)> = sqlx::query_as(
            "SELECT e.parent, s.ended FROM workflow_edges e \
             JOIN workflow_steps s ON s.task_id = e.parent WHERE e.child = $1",
        )
        .bind(task.0)
        .fetch_all(self.exec())
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|(id, ended)| Ok((TaskId(id), ended.as_deref().map(state).transpose()?)))
            .collect()
    }

    async fn step_restore(
        &mut self,
        task: TaskId,
        pending: i32,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(include_str!("sql/restore_cancelled.sql"))
            .bind(task.0)
            .bind(now)
            .execute(self.exec())
            .await
            .map_err(err)?;
        sqlx::query(
            "UPDATE workflow_steps SET ended = NULL, cancelled_by = NULL, pending_parents = $1 \
             WHERE task_id = $2",
        )
        .bind(pending)
        .bind(task.0)
        .execute(self.exec())
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
            "UPDATE workflows SET steps_live = steps_live + $1, status = 'running', \
                 finished_at = NULL, cancel_requested = false WHERE id = $2",
        )
        .bind(steps as i32)
        .bind(workflow.0)
        .execute(self.exec())
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn workflow_of_task(&mut self, task: TaskId) -> Result<Option<WorkflowId>, StoreError> {
        let row: Option<Uuid> =
            sqlx::query_scalar("SELECT workflow_id FROM workflow_steps WHERE task_id = $1")
                .bind(task.0)
                .fetch_optional(self.exec())
                .await
                .map_err(err)?;
        Ok(row.map(WorkflowId))
    }

    async fn workflow_cancel_request(
        &mut self,
        workflow: WorkflowId,
    ) -> Result<Option<Vec<TaskId>>, StoreError> {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM workflows WHERE id = $1 FOR UPDATE")
                .bind(workflow.0)
                .fetch_optional(self.exec())
                .await
                .map_err(err)?;
        match status.as_deref() {
            None => return Ok(None),
            Some("running") => {}
            Some(_) => return Ok(Some(Vec::new())),
        }
        sqlx::query("UPDATE workflows SET cancel_requested = true WHERE id = $1")
            .bind(workflow.0)
            .execute(self.exec())
            .await
            .map_err(err)?;
        let rows: Vec<Uuid> = sqlx::query_scalar(
            "SELECT task_id FROM workflow_steps WHERE workflow_id = $1 AND ended IS NULL",
        )
        .bind(workflow.0)
        .fetch_all(self.exec())
        .await
        .map_err(err)?;
        Ok(Some(rows.into_iter().map(TaskId).collect()))
    }
}

from_row! { sqlx::postgres::PgRow =>
struct WorkflowRow {
    id: Uuid,
    name: Option<String>,
    tenant: Option<String>,
    status: String,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}}

impl WorkflowRow {
    fn into_workflow(self, steps: Vec<WorkflowStep>) -> Result<Workflow, StoreError> {
        Ok(Workflow {
            id: WorkflowId(self.id),
            name: self.name,
            status: self.status.parse().map_err(StoreError::Corrupt)?,
            created_at: self.created_at,
            finished_at: self.finished_at,
            tenant: self.tenant,
            steps,
        })
    }
}

const WORKFLOW_COLUMNS: &str = "id, name, tenant, status, created_at, finished_at";

/// A workflow without its steps.
pub(super) async fn summary(
    exec: &super::exec::PgExec,
    id: WorkflowId,
) -> Result<Option<Workflow>, StoreError> {
    let sql = format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE id = $1");
    let row: Option<WorkflowRow> = sqlx::query_as(&sql)
        .bind(id.0)
        .fetch_optional(exec)
        .await
        .map_err(err)?;
    row.map(|r| r.into_workflow(Vec::new())).transpose()
}

/// A workflow with its steps, in the order they were submitted. A step's
/// task is in `tasks` or `tasks_finished`; the finished side is read first,
/// so a step moving between the two is not missed.
pub(super) async fn get(
    exec: &super::exec::PgExec,
    id: WorkflowId,
) -> Result<Option<Workflow>, StoreError> {
    let Some(mut workflow) = summary(exec, id).await? else {
        return Ok(None);
    };
    from_row! { sqlx::postgres::PgRow =>
    struct StepRow {
        step_id: String,
        task_id: Uuid,
        kind: String,
        state: String,
        depends_on: Value,
        attempts: i32,
        result: Option<Value>,
        error: Option<String>,
        started_at: Option<DateTime<Utc>>,
        completed_at: Option<DateTime<Utc>>,
    }}
    let rows: Vec<StepRow> = sqlx::query_as(
        "SELECT DISTINCT ON (s.position, s.task_id) s.step_id, s.task_id, t.kind, t.state, \
             s.depends_on, t.attempts, t.result, t.error, t.started_at, t.completed_at \
         FROM workflow_steps s \
         JOIN (SELECT id, kind, state, attempts, result, error, started_at, completed_at, \
                      0 AS side FROM tasks_finished \
               UNION ALL \
               SELECT id, kind, state, attempts, NULL, error, started_at, NULL, 1 FROM tasks) t \
           ON t.id = s.task_id \
         WHERE s.workflow_id = $1 ORDER BY s.position, s.task_id, t.side",
    )
    .bind(id.0)
    .fetch_all(exec)
    .await
    .map_err(err)?;
    workflow.steps = rows
        .into_iter()
        .map(|r| {
            Ok(WorkflowStep {
                id: r.step_id,
                task_id: TaskId(r.task_id),
                kind: TaskType::from_stored(r.kind),
                status: state(&r.state)?,
                depends_on: serde_json::from_value(r.depends_on)
                    .map_err(|e| StoreError::Corrupt(format!("depends_on: {e}")))?,
                attempts: r.attempts,
                result: r.result,
                error: r.error,
                started_at: r.started_at,
                completed_at: r.completed_at,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(workflow))
}

/// The workflow and step id of each of these tasks that is a step.
pub(super) async fn steps_of_tasks(
    exec: &super::exec::PgExec,
    tasks: &[TaskId],
) -> Result<Vec<(TaskId, WorkflowId, String)>, StoreError> {
    let rows: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
        "SELECT task_id, workflow_id, step_id FROM workflow_steps WHERE task_id = ANY($1)",
    )
    .bind(uuids(tasks))
    .fetch_all(exec)
    .await
    .map_err(err)?;
    Ok(rows
        .into_iter()
        .map(|(t, w, s)| (TaskId(t), WorkflowId(w), s))
        .collect())
}

/// Workflows matching the filters, newest first, without their steps.
pub(super) async fn list(
    exec: &super::exec::PgExec,
    p: &WorkflowListParams,
) -> Result<Vec<Workflow>, StoreError> {
    let mut q = QueryBuilder::new(format!(
        "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE true"
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
        q.push(" AND id < ").push_bind(before.0);
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(p.limit);
    let rows: Vec<WorkflowRow> = q.build_query_as().fetch_all(exec).await.map_err(err)?;
    rows.into_iter()
        .map(|r| r.into_workflow(Vec::new()))
        .collect()
}
