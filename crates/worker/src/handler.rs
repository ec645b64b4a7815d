//! The one interface every task handler implements: [`Handler`], the
//! [`Job`] it runs, its [`Progress`] and its [`HandlerError`].

use std::fmt;
use std::sync::atomic::{AtomicI16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use weir_core::{TaskId, TaskType};
use weir_store::{StepSubmission, StepsAdder, SubmittedWorkflow, Submitter, WorkflowError};
use weir_trace::TraceContext;

/// Where a running task reports how far it is (0-100); -1 until it reports.
#[derive(Clone, Debug)]
pub struct Progress(Arc<AtomicI16>);

impl Default for Progress {
    fn default() -> Self {
        Progress(Arc::new(AtomicI16::new(-1)))
    }
}

impl Progress {
    pub fn set(&self, percent: u8) {
        self.0.store(i16::from(percent.min(100)), Ordering::Relaxed);
    }

    /// The last report, if any.
    pub fn get(&self) -> Option<i16> {
        let p = self.0.load(Ordering::Relaxed);
        (p >= 0).then_some(p)
    }
}

/// One attempt, as a handler sees it.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: TaskId,
    pub task_type: TaskType,
    pub input: Value,
    /// This attempt's number, from 1.
    pub attempt: i32,
    pub max_attempts: i32,
    /// The attempt's time limit; the worker stops the attempt when it passes.
    pub timeout: Duration,
    /// Where to report progress (0-100), renewed with each lease.
    pub progress: Progress,
    /// Cancelled when the attempt should stop early (the task was cancelled,
    /// its lease was lost, or the worker's drain ran out). The attempt's
    /// future is also dropped then; the token lets a handler stop work it
    /// handed elsewhere.
    pub cancel: CancellationToken,
    /// This attempt's lease token: what an external call on its behalf
    /// (`POST /workflows/{id}/steps`) presents.
    pub lease_token: i64,
    /// Adds steps to this task's workflow when it is a step (a batch).
    pub workflow: WorkflowSteps,
    /// The attempt's span: what a handler sends on (`traceparent`) so that
    /// the work it hands elsewhere joins the task's trace.
    pub trace: Option<TraceContext>,
}

/// Where a running step adds steps to its own workflow: every step waiting
/// on it waits on them too (Sidekiq's batch callback). Adding the same ids
/// again from a retried attempt stores nothing more.
#[derive(Clone, Default)]
pub struct WorkflowSteps {
    adder: Option<Adder>,
}

/// The attempt adding steps.
#[derive(Clone)]
struct Adder {
    submitter: Arc<Submitter>,
    task: TaskId,
    lease_token: i64,
    max_steps: usize,
    /// The trace context the added steps continue (the attempt's).
    trace: Option<String>,
}

impl fmt::Debug for WorkflowSteps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let task = self.adder.as_ref().map(|a| a.task);
        f.debug_struct("WorkflowSteps")
            .field("task", &task)
            .finish()
    }
}

impl WorkflowSteps {
    /// The handle of task `task`'s attempt under `lease_token`; a workflow
    /// holds at most `max_steps` steps.
    pub fn new(
        submitter: Arc<Submitter>,
        task: TaskId,
        lease_token: i64,
        max_steps: usize,
    ) -> Self {
        WorkflowSteps {
            adder: Some(Adder {
                submitter,
                task,
                lease_token,
                max_steps,
                trace: None,
            }),
        }
    }

    /// The same, with the steps it adds continuing `trace`.
    pub fn traced(mut self, trace: Option<&TraceContext>) -> Self {
        if let Some(adder) = &mut self.adder {
            adder.trace = trace.map(TraceContext::to_stored);
        }
        self
    }

    /// Adds `steps` (their `depends_on` naming steps of this list) to the
    /// workflow this task is a step of.
    pub async fn add(
        &self,
        steps: Vec<StepSubmission>,
    ) -> Result<SubmittedWorkflow, WorkflowError> {
        let Some(a) = &self.adder else {
            return Err(WorkflowError::NotAStep(TaskId::default()));
        };
        let adder = StepsAdder {
            workflow: None,
            task: a.task,
            lease_token: a.lease_token,
            tenant: None,
            trace: a.trace.clone(),
        };
        a.submitter.add_steps(adder, steps, a.max_steps).await
    }
}

/// How an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerError {
    pub message: String,
    /// Dead at once: the input will never work.
    pub permanent: bool,
    /// When to try again (capped by the backoff's cap); `None`: the backoff decides.
    pub retry_after: Option<Duration>,
}

impl HandlerError {
    /// A failure worth retrying (with backoff, until `max_attempts`).
    pub fn retryable(message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
            permanent: false,
            retry_after: None,
        }
    }

    /// A failure no retry can mend: the task is dead at once.
    pub fn permanent(message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
            permanent: true,
            retry_after: None,
        }
    }

    /// Retry no sooner than `after` (capped by the backoff's cap).
    pub fn retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }
}

impl From<HandlerError> for weir_core::AttemptEnd {
    fn from(e: HandlerError) -> Self {
        weir_core::AttemptEnd::Failed {
            error: e.message,
            permanent: e.permanent,
            retry_after: e.retry_after,
        }
    }
}

impl From<String> for HandlerError {
    fn from(message: String) -> Self {
        HandlerError::retryable(message)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs attempts of one task type. Three outcomes: `Ok(result)`, a
/// retryable error, or a permanent one.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn run(&self, job: Job) -> Result<Value, HandlerError>;
}
