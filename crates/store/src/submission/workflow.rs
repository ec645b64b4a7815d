//! What a submitted workflow becomes: each step a submission under the
//! same rules as any task, the graph checked before anything is stored.

use chrono::Utc;
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;
use weir_core::{
    check_graph, GraphError, IdempotencyKey, InputError, NewStep, NewWorkflow, ParentFailure,
    StoreError, TaskId, WorkflowId, Workflows,
};

use super::{scoped, Submission, SubmitError, Submitter};

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
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn valid_step_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_STEP_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

impl Submitter {
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
        if let Some(bad) = w.steps.iter().find(|s| !valid_step_id(&s.id)) {
            return Err(WorkflowError::InvalidStepId(bad.id.clone()));
        }
        let order = check_graph(
            w.steps
                .iter()
                .map(|s| (s.id.as_str(), s.depends_on.as_slice())),
        )?;
        let now = Utc::now();
        let mut steps = Vec::with_capacity(w.steps.len());
        for &i in &order {
            let step = &w.steps[i];
            let mut task = step.task.clone();
            task.tenant = w.tenant.clone();
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
        let fingerprint = w.fingerprint();
        let submitted = SubmittedWorkflow {
            id: WorkflowId::new(),
            steps: w
                .steps
                .iter()
                .map(|s| {
                    let task = steps.iter().find(|n| n.step_id == s.id).map(|n| n.task.id);
                    (s.id.clone(), task.unwrap_or_default())
                })
                .collect(),
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
            key: scoped(w.tenant.as_deref(), key),
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
