//! What a submitted workflow becomes: each step a submission under the
//! same rules as any task, the graph checked before anything is stored.

use chrono::Utc;
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;
use weir_core::{
    check_graph, GraphError, IdempotencyKey, InputError, NewStep, NewSteps, NewWorkflow,
    ParentFailure, StepsAdded, StoreError, TaskId, WorkflowId, Workflows,
};

use super::{Submission, SubmitError, Submitter};

/// Longest step id accepted.
pub const MAX_STEP_ID_BYTES: usize = 128;

/// One step as submitted: a task's submission and its place in the graph.
#[derive(Clone, Debug)]
pub struct StepSubmission {
    pub id: String,
    /// Its task; an idempotency key belongs to the workflow, not a step.
    pub task: Submission,
    pub depends_on: Vec<String>,
    pub on_parent_failure: ParentFailure,
    pub with_parent_results: bool,
}

/// A workflow as submitted.
#[derive(Clone, Debug, Default)]
pub struct WorkflowSubmission {
    pub name: Option<String>,
    /// The submitting key's tenant: the workflow and its steps are its.
    pub tenant: Option<String>,
    pub steps: Vec<StepSubmission>,
    /// The same key within the idempotency window returns this workflow.
    pub idempotency_key: Option<String>,
    /// The trace context every step's attempts continue.
    pub trace: Option<String>,
}

impl WorkflowSubmission {
    /// What makes two workflow submissions the same request: the name and
    /// every step as given (each step's task by its own fingerprint). Never
    /// equal to a task's.
    pub fn fingerprint(&self) -> String {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| {
                serde_json::json!([
                    s.id,
                    s.task.fingerprint(),
                    s.depends_on,
                    s.on_parent_failure.as_str(),
                    s.with_parent_results
                ])
            })
            .collect();
        let fields = serde_json::json!(["workflow", self.name, steps]);
        hex::encode(Sha256::digest(fields.to_string().as_bytes()))
    }
}

/// A stored workflow: its id and each step's task id, in the order given.
#[derive(Clone, Debug, PartialEq)]
pub struct SubmittedWorkflow {
    pub id: WorkflowId,
    pub steps: Vec<(String, TaskId)>,
    /// An earlier submission under the same idempotency key stored it.
    pub replayed: bool,
}

/// Why a workflow was refused.
#[derive(Debug, Error)]
pub enum WorkflowError {
    /// The graph: a cycle, an unknown parent, a repeated step id, no steps.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A step id that is empty, too long, or not of `A-Z a-z 0-9 _ . : -`.
    #[error("step id {0:?} must be 1 to {MAX_STEP_ID_BYTES} of A-Z a-z 0-9 _ . : -")]
    InvalidStepId(String),
    /// One step's task refused as a task submission would be.
    #[error("step {step:?}: {error}")]
    Step { step: String, error: InputError },
    #[error("a workflow has at most {max} steps; this one has {given}")]
    TooManySteps { max: usize, given: usize },
    /// Adding steps: the adder is not running under the lease token given.
    #[error("this attempt no longer holds task {0} (its lease lapsed and it was rescued, or it ended or was cancelled); nothing was added")]
    LeaseLost(TaskId),
    /// Adding steps: the task is no step of the workflow (or not the
    /// caller's to see).
    #[error("task {0} is no step of this workflow")]
    NotAStep(TaskId),
    /// Adding steps: the workflow has a step of this id already.
    #[error("the workflow already has a step {0:?}")]
    StepExists(String),
    /// Adding steps: the workflow is being cancelled.
    #[error("the workflow is being cancelled; no steps can be added")]
    NotRunning,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where steps are added: the running step adding them, fenced by its lease.
#[derive(Clone, Debug)]
pub struct StepsAdder {
    /// The workflow the caller names (`None`: the adder's, whichever).
    pub workflow: Option<WorkflowId>,
    pub task: TaskId,
    pub lease_token: i64,
    /// The caller's tenant: a step of another tenant's workflow is not
    /// found. `None`: sees every workflow.
    pub tenant: Option<String>,
    /// The trace context the added steps' attempts continue (the adding
    /// attempt's).
    pub trace: Option<String>,
}

/// Each given step's id with its task, in the order given.
fn in_order(
    given: &[StepSubmission],
    tasks: impl IntoIterator<Item = (String, TaskId)>,
) -> Vec<(String, TaskId)> {
    let task_of: std::collections::HashMap<String, TaskId> = tasks.into_iter().collect();
    given
        .iter()
        .filter_map(|g| task_of.get(&g.id).map(|t| (g.id.clone(), *t)))
        .collect()
}

fn valid_step_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_STEP_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

impl Submitter {
    /// Checks steps — their ids, their graph among themselves, every
    /// step's task — and makes them ready to store, parents first.
    fn prepare_steps(
        &self,
        given: &[StepSubmission],
        tenant: Option<&str>,
        trace: Option<&str>,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<NewStep>, WorkflowError> {
        if let Some(bad) = given.iter().find(|s| !valid_step_id(&s.id)) {
            return Err(WorkflowError::InvalidStepId(bad.id.clone()));
        }
        let order = check_graph(
            given
                .iter()
                .map(|s| (s.id.as_str(), s.depends_on.as_slice())),
        )?;
        let mut steps = Vec::with_capacity(given.len());
        for &i in &order {
            let step = &given[i];
            let mut task = step.task.clone();
            task.tenant = tenant.map(str::to_owned);
            task.trace = trace.map(str::to_owned);
            let mut params = self.prepare(&task, now).map_err(|e| match e {
                SubmitError::Input(error) => WorkflowError::Step {
                    step: step.id.clone(),
                    error,
                },
                SubmitError::Store(e) => WorkflowError::Store(e),
            })?;
            // A step is its own task: never folded into an equal input.
            params.cache_key = None;
            let mut depends_on: Vec<String> = Vec::with_capacity(step.depends_on.len());
            for parent in &step.depends_on {
                if !depends_on.contains(parent) {
                    depends_on.push(parent.clone());
                }
            }
            steps.push(NewStep {
                step_id: step.id.clone(),
                task: params,
                depends_on,
                on_parent_failure: step.on_parent_failure,
                with_parent_results: step.with_parent_results,
            });
        }
        Ok(steps)
    }

    /// Adds steps to the workflow of a running step (a batch): checked as a
    /// workflow's are (their `depends_on` among themselves), then stored in
    /// one transaction, and every step waiting on the adder waits on them
    /// too. The same ids again from the same step answer with the tasks
    /// stored the first time (`replayed`).
    pub async fn add_steps(
        &self,
        adder: StepsAdder,
        given: Vec<StepSubmission>,
        max_steps: usize,
    ) -> Result<SubmittedWorkflow, WorkflowError> {
        if given.len() > max_steps {
            return Err(WorkflowError::TooManySteps {
                max: max_steps,
                given: given.len(),
            });
        }
        let not_a_step = || WorkflowError::NotAStep(adder.task);
        let task = self
            .store
            .task_get(adder.task)
            .await?
            .ok_or_else(not_a_step)?;
        let visible = adder.tenant.is_none() || adder.tenant == task.tenant;
        let Some(workflow) = task.workflow_id.filter(|_| visible) else {
            return Err(not_a_step());
        };
        if adder.workflow.is_some_and(|w| w != workflow) {
            return Err(not_a_step());
        }
        let now = Utc::now();
        let steps =
            self.prepare_steps(&given, task.tenant.as_deref(), adder.trace.as_deref(), now)?;
        let added = Workflows::workflow_add_steps(
            &*self.store,
            NewSteps {
                adder: adder.task,
                lease_token: adder.lease_token,
                now,
                steps,
                max_total: max_steps,
            },
        )
        .await?;
        match added {
            StepsAdded::Added { workflow, steps } => Ok(SubmittedWorkflow {
                id: workflow,
                steps: in_order(&given, steps),
                replayed: false,
            }),
            StepsAdded::Replayed { workflow, steps } => Ok(SubmittedWorkflow {
                id: workflow,
                steps: in_order(&given, steps),
                replayed: true,
            }),
            StepsAdded::LeaseLost => Err(WorkflowError::LeaseLost(adder.task)),
            StepsAdded::NotAStep => Err(not_a_step()),
            StepsAdded::StepExists(id) => Err(WorkflowError::StepExists(id)),
            StepsAdded::TooMany { total, max } => {
                Err(WorkflowError::TooManySteps { max, given: total })
            }
            StepsAdded::NotRunning => Err(WorkflowError::NotRunning),
        }
    }

    /// Checks a workflow whole — at most `max_steps` steps, the graph, every
    /// step's task — then stores it in one transaction: steps without
    /// parents queued, the others waiting.
    pub async fn submit_workflow(
        &self,
        w: WorkflowSubmission,
        max_steps: usize,
    ) -> Result<SubmittedWorkflow, WorkflowError> {
        if w.steps.len() > max_steps {
            return Err(WorkflowError::TooManySteps {
                max: max_steps,
                given: w.steps.len(),
            });
        }
        let now = Utc::now();
        let steps = self.prepare_steps(&w.steps, w.tenant.as_deref(), w.trace.as_deref(), now)?;
        let fingerprint = w.fingerprint();
        let submitted = SubmittedWorkflow {
            id: WorkflowId::new(),
            steps: in_order(
                &w.steps,
                steps.iter().map(|n| (n.step_id.clone(), n.task.id)),
            ),
            replayed: false,
        };
        let workflow = NewWorkflow {
            id: submitted.id,
            name: w.name,
            tenant: w.tenant.clone(),
            now,
            steps,
        };
        let Some(key) = w.idempotency_key else {
            Workflows::workflow_insert(&*self.store, workflow).await?;
            return Ok(submitted);
        };
        let key = IdempotencyKey {
            key: weir_core::tenant_scoped(w.tenant.as_deref(), key),
            fingerprint: Some(fingerprint),
        };
        let window = self.idempotency_window;
        let Some(existing) =
            Workflows::workflow_insert_idempotent(&*self.store, workflow, &key, window).await?
        else {
            return Ok(submitted);
        };
        let stored = Workflows::workflow_get(&*self.store, existing)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("workflow {existing} vanished")))?;
        Ok(SubmittedWorkflow {
            id: existing,
            steps: stored
                .steps
                .into_iter()
                .map(|s| (s.id, s.task_id))
                .collect(),
            replayed: true,
        })
    }
}
