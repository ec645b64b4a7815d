//! The steps of a workflow's graph one SQL dialect implements, inside a
//! [`crate::DriverTx`] (its supertrait); what they add up to is decided
//! once, in `sql_store/workflow.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use weir_core::{
    NewStep, NewWorkflow, ParentFailure, StoreError, TaskId, TaskState, WorkflowId, WorkflowStatus,
};

/// A step that has just ended, as its workflow counts it.
#[derive(Clone, Debug, PartialEq)]
pub struct EndedStep {
    pub task: TaskId,
    pub workflow: WorkflowId,
    pub step_id: String,
    pub state: TaskState,
    /// For a step with parents that ran once: seconds from its last parent's
    /// end (when it was queued) to its start.
    pub start_wait: Option<f64>,
}

/// An edge from a parent to a child that has not ended.
#[derive(Clone, Debug, PartialEq)]
pub struct StepChild {
    pub parent: TaskId,
    pub child: TaskId,
    pub on_parent_failure: ParentFailure,
}

/// A step whose parents have all ended.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadyStep {
    pub task: TaskId,
    pub with_parent_results: bool,
}

/// A parent's end, as a child with `with_parent_results` receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct ParentOutcome {
    pub step_id: String,
    pub state: TaskState,
    pub result: Option<Value>,
    pub error: Option<String>,
}

/// A waiting step cancelled because `parent` failed.
#[derive(Clone, Debug, PartialEq)]
pub struct StepCancel {
    pub task: TaskId,
    pub parent: TaskId,
    pub error: String,
}

/// A step found by its id.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedStep {
    pub step_id: String,
    pub task: TaskId,
    /// The running step that added it (`None`: submitted with its workflow).
    pub added_by: Option<TaskId>,
}

/// A workflow's counts after steps ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkflowCounts {
    pub total: i64,
    pub live: i64,
    pub succeeded: i64,
    pub cancel_requested: bool,
}

impl WorkflowCounts {
    /// The counts as a dialect reads them: (total, live, succeeded,
    /// cancel requested).
    pub fn from_row<N: Into<i64>>(
        (total, live, succeeded, cancel_requested): (N, N, N, bool),
    ) -> Self {
        WorkflowCounts {
            total: total.into(),
            live: live.into(),
            succeeded: succeeded.into(),
            cancel_requested,
        }
    }

    /// The status these counts mean.
    pub fn status(&self) -> WorkflowStatus {
        if self.live > 0 {
            WorkflowStatus::Running
        } else if self.cancel_requested {
            WorkflowStatus::Cancelled
        } else if self.succeeded == self.total {
            WorkflowStatus::Succeeded
        } else {
            WorkflowStatus::Failed
        }
    }
}

/// A workflow's graph, one dialect's statements.
#[async_trait]
pub trait WorkflowTx: Send {
    /// Stores a workflow's row, running, without steps yet (see
    /// [`WorkflowTx::workflow_grow`]).
    async fn workflow_row_insert(&mut self, w: &NewWorkflow) -> Result<(), StoreError>;
    /// Stores steps of `workflow` and their tasks (queued when they have no
    /// parents, else waiting), numbered for display after the steps its row
    /// counts; `edges` are (parent, child) task pairs among them;
    /// `added_by`: the running step that added them.
    async fn steps_insert(
        &mut self,
        workflow: WorkflowId,
        steps: &[NewStep],
        edges: &[(TaskId, TaskId)],
        added_by: Option<TaskId>,
    ) -> Result<(), StoreError>;
    /// Whether `task` is running under `lease_token`; if so it stays so
    /// until this transaction ends (its row is held).
    async fn task_held(&mut self, task: TaskId, lease_token: i64) -> Result<bool, StoreError>;
    /// The steps of `workflow` among `ids`: step id, task, and the step
    /// that added it.
    async fn steps_named(
        &mut self,
        workflow: WorkflowId,
        ids: &[String],
    ) -> Result<Vec<NamedStep>, StoreError>;
    /// A waiting `child` waits on `parents` too (step id and task; its
    /// `depends_on` names them).
    async fn step_adopt(
        &mut self,
        child: TaskId,
        parents: &[(String, TaskId)],
    ) -> Result<(), StoreError>;
    /// `n` more steps in a workflow, all live; returns its counts. Taken
    /// last in a transaction that changes steps, as the end of a step takes
    /// it, so two such transactions lock rows in the same order.
    async fn workflow_grow(
        &mut self,
        workflow: WorkflowId,
        n: i64,
    ) -> Result<WorkflowCounts, StoreError>;
    /// Marks the steps among these ended tasks as ended (once: a step
    /// already marked is left out) and returns them.
    async fn steps_end(
        &mut self,
        ended: &[(TaskId, TaskState)],
    ) -> Result<Vec<EndedStep>, StoreError>;
    /// The children of these parents that have not ended.
    async fn step_children(&mut self, parents: &[TaskId]) -> Result<Vec<StepChild>, StoreError>;
    /// Counts `n` more ended parents for each child; returns the children
    /// with none left.
    async fn steps_parents_ended(
        &mut self,
        counts: &[(TaskId, i32)],
    ) -> Result<Vec<ReadyStep>, StoreError>;
    /// A step's stored input.
    async fn step_input(&mut self, task: TaskId) -> Result<Value, StoreError>;
    /// How each parent of a step ended.
    async fn step_parent_outcomes(
        &mut self,
        task: TaskId,
    ) -> Result<Vec<ParentOutcome>, StoreError>;
    /// Waiting steps' tasks queued, due now at the latest, each with its
    /// input replaced when one is given.
    async fn steps_queue(
        &mut self,
        steps: &[(TaskId, Option<Value>)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Waiting steps cancelled, each marked ended by its parent's failure;
    /// returns them.
    async fn steps_cancel(
        &mut self,
        cancels: &[StepCancel],
        now: DateTime<Utc>,
    ) -> Result<Vec<EndedStep>, StoreError>;
    /// Takes (workflow, `ended` steps, `succeeded` of them) off each
    /// workflow's live count; returns each one's counts.
    async fn workflows_count_ended(
        &mut self,
        ended: &[(WorkflowId, i64, i64)],
    ) -> Result<Vec<(WorkflowId, WorkflowCounts)>, StoreError>;
    /// Workflows with no live step left, each finished with its status.
    async fn workflows_finish(
        &mut self,
        finished: &[(WorkflowId, WorkflowStatus)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// A retried step live again in its workflow; `None` when the task is
    /// no step, or was not ended.
    async fn step_reopen(&mut self, task: TaskId) -> Result<Option<WorkflowId>, StoreError>;
    /// The steps cancelled by `parent`'s failure.
    async fn steps_cancelled_by(&mut self, parent: TaskId) -> Result<Vec<TaskId>, StoreError>;
    /// A step's parents, each with how it ended (`None`: not yet).
    async fn step_parents(
        &mut self,
        task: TaskId,
    ) -> Result<Vec<(TaskId, Option<TaskState>)>, StoreError>;
    /// A cancelled step waiting again, on `pending` parents.
    async fn step_restore(
        &mut self,
        task: TaskId,
        pending: i32,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// `steps` live again in a workflow: it runs again (a cancel asked for
    /// earlier no longer holds).
    async fn workflow_reopen(&mut self, workflow: WorkflowId, steps: i64)
        -> Result<(), StoreError>;
    /// The workflow a task is a step of.
    async fn workflow_of_task(&mut self, task: TaskId) -> Result<Option<WorkflowId>, StoreError>;
    /// Asks a running workflow to stop; returns its steps that have not
    /// ended (none when it is not running; `None`: no such workflow).
    async fn workflow_cancel_request(
        &mut self,
        workflow: WorkflowId,
    ) -> Result<Option<Vec<TaskId>>, StoreError>;
}
