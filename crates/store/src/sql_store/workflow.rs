//! Workflows: what the end of a step does to the rest of its graph, decided
//! once for every dialect and every way a task ends (a worker's completion,
//! a lease run out on the last attempt, a cancel), inside the transaction
//! that ends it — so a step is queued exactly once, when its last parent
//! ends, and a crash between the two cannot happen.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use weir_core::{
    IdempotencyKey, NewStep, NewSteps, NewWorkflow, ParentFailure, StepsAdded, StoreError, TaskId,
    TaskState, Workflow, WorkflowId, WorkflowListParams, WorkflowStatus, Workflows,
};

use super::SqlStore;
use crate::driver::DriverTx;
use crate::workflow_tx::{EndedStep, ParentOutcome, StepCancel};

/// Stores a workflow, its steps and their tasks.
async fn insert(tx: &mut dyn DriverTx, w: &NewWorkflow) -> Result<(), StoreError> {
    tx.workflow_row_insert(w).await?;
    let edges = edges_of(&w.steps)?;
    tx.steps_insert(w.id, &w.steps, &edges, None).await?;
    tx.workflow_grow(w.id, w.steps.len() as i64).await?;
    Ok(())
}

/// The (parent, child) task pairs of `steps`' `depends_on`, each parent
/// one of `steps`.
fn edges_of(steps: &[NewStep]) -> Result<Vec<(TaskId, TaskId)>, StoreError> {
    let task_of: HashMap<&str, TaskId> = steps
        .iter()
        .map(|s| (s.step_id.as_str(), s.task.id))
        .collect();
    let mut edges = Vec::new();
    for s in steps {
        for parent in &s.depends_on {
            let parent = task_of.get(parent.as_str()).ok_or_else(|| {
                StoreError::Corrupt(format!("step {parent:?} of the graph has no task"))
            })?;
            edges.push((*parent, s.task.id));
        }
    }
    Ok(edges)
}

/// Steps a running step adds to its workflow (a batch): stored, and every
/// step waiting on the adder waits on each of them too — so a step after
/// the adder runs once the adder and everything it added (transitively:
/// an added step adding more passes them on the same way) have ended.
/// Adding the same ids again from the same step (a retried attempt) stores
/// nothing and answers with their tasks.
async fn add_steps(tx: &mut dyn DriverTx, add: &NewSteps) -> Result<StepsAdded, StoreError> {
    if !tx.task_held(add.adder, add.lease_token).await? {
        return Ok(StepsAdded::LeaseLost);
    }
    let Some(workflow) = tx.workflow_of_task(add.adder).await? else {
        return Ok(StepsAdded::NotAStep);
    };
    let ids: Vec<String> = add.steps.iter().map(|s| s.step_id.clone()).collect();
    let existing = tx.steps_named(workflow, &ids).await?;
    if let Some(other) = existing.iter().find(|s| s.added_by != Some(add.adder)) {
        return Ok(StepsAdded::StepExists(other.step_id.clone()));
    }
    if !existing.is_empty() {
        if existing.len() < ids.len() {
            // Part of the list was added before: the rest would be another
            // batch under ids already taken.
            return Ok(StepsAdded::StepExists(existing[0].step_id.clone()));
        }
        let task_of: HashMap<&str, TaskId> = existing
            .iter()
            .map(|s| (s.step_id.as_str(), s.task))
            .collect();
        let steps = ids
            .iter()
            .filter_map(|id| task_of.get(id.as_str()).map(|t| (id.clone(), *t)))
            .collect();
        return Ok(StepsAdded::Replayed { workflow, steps });
    }
    let edges = edges_of(&add.steps)?;
    tx.steps_insert(workflow, &add.steps, &edges, Some(add.adder))
        .await?;
    let added: Vec<(String, TaskId)> = add
        .steps
        .iter()
        .map(|s| (s.step_id.clone(), s.task.id))
        .collect();
    for child in tx.step_children(&[add.adder]).await? {
        tx.step_adopt(child.child, &added).await?;
    }
    // Checked after the change, with the workflow's row held: the caller
    // rolls back what any answer but Added or Replayed stored.
    let counts = tx.workflow_grow(workflow, added.len() as i64).await?;
    if counts.cancel_requested {
        return Ok(StepsAdded::NotRunning);
    }
    if counts.total as usize > add.max_total {
        return Ok(StepsAdded::TooMany {
            total: counts.total as usize,
            max: add.max_total,
        });
    }
    Ok(StepsAdded::Added {
        workflow,
        steps: added,
    })
}

/// Seconds from a step's last parent ending to the step starting (a
/// fan-in's wait), per step with parents that ran once.
pub const START_WAIT_METRIC: &str = "weir_workflow_step_start_wait_seconds";

/// What the end of steps did that others wait for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StepsOutcome {
    /// A step was queued: wake the workers.
    pub queued: bool,
    /// These workflows finished: wake their waiters.
    pub finished: Vec<WorkflowId>,
}

/// Applies the end of these tasks (those that are workflow steps) to their
/// workflows: dependents queued, cancelled or left waiting, and each
/// workflow's status. Cancelled dependents end in turn, transitively.
pub(crate) async fn steps_ended(
    tx: &mut dyn DriverTx,
    ended: &[(TaskId, TaskState)],
    now: DateTime<Utc>,
) -> Result<StepsOutcome, StoreError> {
    if ended.is_empty() {
        return Ok(StepsOutcome::default());
    }
    let mut round = tx.steps_end(ended).await?;
    for wait in round.iter().filter_map(|s| s.start_wait) {
        // Recorded as the step ends: its start is known by then.
        metrics::histogram!(START_WAIT_METRIC).record(wait.max(0.0));
    }
    let mut queued_any = false;
    let mut per_workflow: HashMap<WorkflowId, (i64, i64)> = HashMap::new();
    while !round.is_empty() {
        for step in &round {
            let counts = per_workflow.entry(step.workflow).or_default();
            counts.0 += 1;
            counts.1 += i64::from(step.state == TaskState::Succeeded);
        }
        let (cancelled, queued) = children_of(tx, &round, now).await?;
        queued_any |= queued;
        round = cancelled;
    }
    if per_workflow.is_empty() {
        // None of the tasks was a step.
        return Ok(StepsOutcome::default());
    }
    let ended: Vec<(WorkflowId, i64, i64)> = per_workflow
        .into_iter()
        .map(|(workflow, (ended, succeeded))| (workflow, ended, succeeded))
        .collect();
    let finished: Vec<(WorkflowId, WorkflowStatus)> = tx
        .workflows_count_ended(&ended)
        .await?
        .into_iter()
        .filter(|(_, counts)| counts.live == 0)
        .map(|(workflow, counts)| (workflow, counts.status()))
        .collect();
    if !finished.is_empty() {
        tx.workflows_finish(&finished, now).await?;
    }
    Ok(StepsOutcome {
        queued: queued_any,
        finished: finished.into_iter().map(|(workflow, _)| workflow).collect(),
    })
}

/// Decides the children of steps that just ended: a child under `cancel`
/// with a failed parent is cancelled (and returned, as it has ended too);
/// any other child counts its ended parents, and is queued when none is
/// left (the `bool`: one was).
async fn children_of(
    tx: &mut dyn DriverTx,
    parents: &[EndedStep],
    now: DateTime<Utc>,
) -> Result<(Vec<EndedStep>, bool), StoreError> {
    let ids: Vec<TaskId> = parents.iter().map(|p| p.task).collect();
    let by_id: HashMap<TaskId, &EndedStep> = parents.iter().map(|p| (p.task, p)).collect();
    let mut cancels: Vec<StepCancel> = Vec::new();
    let mut ended_parents: HashMap<TaskId, i32> = HashMap::new();
    for edge in tx.step_children(&ids).await? {
        let Some(parent) = by_id.get(&edge.parent) else {
            continue;
        };
        let failed = parent.state != TaskState::Succeeded;
        if failed && edge.on_parent_failure == ParentFailure::Cancel {
            if !cancels.iter().any(|c| c.task == edge.child) {
                cancels.push(StepCancel {
                    task: edge.child,
                    parent: parent.task,
                    error: format!(
                        "cancelled: step {:?} ended {}",
                        parent.step_id,
                        parent.state.as_str()
                    ),
                });
            }
        } else {
            *ended_parents.entry(edge.child).or_default() += 1;
        }
    }
    // A child cancelled here does not also count its parents.
    ended_parents.retain(|child, _| !cancels.iter().any(|c| c.task == *child));
    let counts: Vec<(TaskId, i32)> = ended_parents.into_iter().collect();
    let ready = if counts.is_empty() {
        Vec::new()
    } else {
        tx.steps_parents_ended(&counts).await?
    };
    let queued = !ready.is_empty();
    let mut to_queue = Vec::with_capacity(ready.len());
    for ready in ready {
        let input = if ready.with_parent_results {
            Some(with_parents(
                tx.step_input(ready.task).await?,
                tx.step_parent_outcomes(ready.task).await?,
            ))
        } else {
            None
        };
        to_queue.push((ready.task, input));
    }
    if !to_queue.is_empty() {
        tx.steps_queue(&to_queue, now).await?;
    }
    if cancels.is_empty() {
        return Ok((Vec::new(), queued));
    }
    Ok((tx.steps_cancel(&cancels, now).await?, queued))
}

/// The input a step gets with `"with_parent_results": true`: its own, with
/// `"parents": {"<step id>": <result>}` (`{"error": …}` for a parent that
/// did not succeed).
fn with_parents(input: Value, parents: Vec<ParentOutcome>) -> Value {
    let mut results = Map::new();
    for p in parents {
        let value = match p.state {
            TaskState::Succeeded => p.result.unwrap_or(Value::Null),
            state => serde_json::json!({
                "error": p.error.unwrap_or_else(|| state.as_str().to_string())
            }),
        };
        results.insert(p.step_id, value);
    }
    let mut input = match input {
        Value::Object(map) => map,
        other => {
            let mut map = Map::new();
            map.insert("input".into(), other);
            map
        }
    };
    input.insert("parents".into(), Value::Object(results));
    Value::Object(input)
}

/// A dead step queued again (`POST /tasks/{id}/retry`): it is live again in
/// its workflow, and the dependents its failure cancelled wait again —
/// transitively — unless another parent of theirs has failed meanwhile.
pub(crate) async fn step_retried(
    tx: &mut dyn DriverTx,
    task: TaskId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(workflow) = tx.step_reopen(task).await? else {
        return Ok(());
    };
    let mut reopened = 1;
    let mut frontier = vec![task];
    while let Some(parent) = frontier.pop() {
        for child in tx.steps_cancelled_by(parent).await? {
            let parents = tx.step_parents(child).await?;
            let other_failed = parents.iter().any(|(id, ended)| {
                *id != parent && matches!(ended, Some(s) if *s != TaskState::Succeeded)
            });
            if other_failed {
                continue;
            }
            let pending = parents.iter().filter(|(_, ended)| ended.is_none()).count();
            tx.step_restore(child, pending as i32, now).await?;
            reopened += 1;
            frontier.push(child);
        }
    }
    tx.workflow_reopen(workflow, reopened).await
}

#[async_trait]
impl Workflows for SqlStore {
    async fn workflow_insert(&self, workflow: NewWorkflow) -> Result<(), StoreError> {
        self.call(|| async {
            let mut tx = self.driver().begin().await?;
            insert(&mut *tx, &workflow).await?;
            tx.commit().await
        })
        .await?;
        if workflow
            .steps
            .iter()
            .any(|s| s.initial_state() == TaskState::Queued)
        {
            self.wake_workers();
        }
        Ok(())
    }

    async fn workflow_insert_idempotent(
        &self,
        workflow: NewWorkflow,
        key: &IdempotencyKey,
        window: Duration,
    ) -> Result<Option<WorkflowId>, StoreError> {
        // The key names the workflow's first step (a step without parents):
        // the task whose life the key's own follows, as for a task's key.
        let Some(first) = workflow.steps.first().map(|s| s.task.id) else {
            return Err(StoreError::Internal("a workflow without steps".into()));
        };
        let oldest =
            workflow.now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let existing = self
            .call(|| async {
                let mut tx = self.driver().begin().await?;
                let fingerprint = key.fingerprint.as_deref();
                let held = tx
                    .idempotency_key_take(&key.key, fingerprint, first, workflow.now, oldest)
                    .await?;
                let Some(held) = held else {
                    insert(&mut *tx, &workflow).await?;
                    tx.commit().await?;
                    return Ok(None);
                };
                if let (Some(first), Some(this)) = (held.fingerprint.as_deref(), fingerprint) {
                    if first != this {
                        return Err(StoreError::IdempotencyKeyReused(format!(
                            "task {}",
                            held.task
                        )));
                    }
                }
                let named = tx.workflow_of_task(held.task).await?;
                tx.commit().await?;
                named
                    .map(Some)
                    .ok_or_else(|| StoreError::IdempotencyKeyReused(format!("task {}", held.task)))
            })
            .await?;
        if existing.is_none() {
            self.wake_workers();
        }
        Ok(existing)
    }

    async fn workflow_add_steps(&self, add: NewSteps) -> Result<StepsAdded, StoreError> {
        let added = self
            .call(|| async {
                let mut tx = self.driver().begin().await?;
                let added = add_steps(&mut *tx, &add).await?;
                if matches!(
                    added,
                    StepsAdded::Added { .. } | StepsAdded::Replayed { .. }
                ) {
                    tx.commit().await?;
                }
                Ok(added)
            })
            .await?;
        if matches!(added, StepsAdded::Added { .. })
            && add
                .steps
                .iter()
                .any(|s| s.initial_state() == TaskState::Queued)
        {
            self.wake_workers();
        }
        Ok(added)
    }

    async fn workflow_counts(&self) -> Result<Vec<(WorkflowStatus, i64)>, StoreError> {
        self.call(|| self.driver().workflow_status_counts())
            .await?
            .into_iter()
            .map(|(status, n)| Ok((status.parse().map_err(StoreError::Corrupt)?, n)))
            .collect()
    }

    async fn workflow_get(&self, id: WorkflowId) -> Result<Option<Workflow>, StoreError> {
        self.call(|| self.driver().workflow_get(id)).await
    }

    async fn workflow_summary(&self, id: WorkflowId) -> Result<Option<Workflow>, StoreError> {
        self.call(|| self.driver().workflow_summary(id)).await
    }

    fn workflow_finished(&self) -> tokio::sync::broadcast::Receiver<WorkflowId> {
        self.finished_receiver()
    }

    async fn steps_of_tasks(
        &self,
        tasks: &[TaskId],
    ) -> Result<Vec<(TaskId, WorkflowId, String)>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        self.call(|| self.driver().steps_of_tasks(tasks)).await
    }

    async fn workflow_list(&self, params: WorkflowListParams) -> Result<Vec<Workflow>, StoreError> {
        self.call(|| self.driver().workflow_list(&params)).await
    }

    async fn workflow_cancel(
        &self,
        id: WorkflowId,
        now: DateTime<Utc>,
    ) -> Result<Option<Workflow>, StoreError> {
        let found = self
            .call(|| async {
                let mut tx = self.driver().begin().await?;
                let Some(live) = tx.workflow_cancel_request(id).await? else {
                    return Ok(None);
                };
                let mut ended = Vec::with_capacity(live.len());
                for task in live {
                    if tx.task_cancel_live(task, now).await?.is_some() {
                        ended.push((task, TaskState::Cancelled));
                    }
                }
                let outcome = steps_ended(&mut *tx, &ended, now).await?;
                tx.commit().await?;
                Ok(Some(outcome))
            })
            .await?;
        let Some(outcome) = found else {
            return Ok(None);
        };
        self.after_steps(outcome);
        self.workflow_get(id).await
    }
}
