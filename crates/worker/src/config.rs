//! A worker's settings.

use std::sync::Arc;
use std::time::Duration;

use weir_core::{RetryPolicy, TaskType, TaskTypes};

use crate::registry::{HandlerSetupError, Handlers};

/// How one worker behaves. Built by the CLI from flags, env and config file.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Unique id shown in `GET /workers` and stored on tasks it runs.
    pub worker_id: String,
    /// Tasks run at once.
    pub concurrency: usize,
    /// How long a claim holds without renewal; renewed every heartbeat.
    pub lease: Duration,
    /// How often an idle worker looks for work when no wake-up signal arrives
    /// (tasks inserted by another process, retries coming due).
    pub poll_interval: Duration,
    /// How often the worker reports itself and renews its leases.
    pub heartbeat_interval: Duration,
    /// How often the worker looks for expired leases to rescue.
    pub rescue_interval: Duration,
    /// How long a draining worker lets running tasks finish before handing them back.
    pub shutdown_grace: Duration,
    /// How long cacheable results stay in the shared cache.
    pub cache_ttl: Duration,
    /// Backoff between failed attempts, unless the task's type or its
    /// submission says otherwise.
    pub retry: RetryPolicy,
    /// The types the cluster knows: timeouts, backoff, caching per type.
    pub task_types: Arc<TaskTypes>,
    /// The handlers this worker runs; it claims only their types.
    pub handlers: Handlers,
    /// How often the cleaner runs (only on the maintenance leader).
    pub maintenance_interval: Duration,
    /// Succeeded tasks (and finished workflows, idempotency keys) are
    /// deleted this long after they finished.
    pub retention: Duration,
    /// Dead tasks are kept this long (an operator's to look at and retry).
    pub retain_dead: Duration,
    /// Cancelled tasks are kept this long.
    pub retain_cancelled: Duration,
    /// A worker silent this long is marked offline by the cleaner.
    pub worker_offline_after: Duration,
    /// Periodic jobs; queued by whichever worker holds the scheduler lease.
    pub periodic: Vec<crate::maintenance::scheduler::PeriodicJob>,
    /// How often the scheduler looks for due slots.
    pub scheduler_interval: Duration,
    /// Only these queues (`None`: every queue).
    pub queues: Option<Vec<String>>,
    /// Queue limits this worker sets in the store at start (shared by all).
    pub queue_limits: Vec<weir_core::QueueLimits>,
    /// Most running tasks per concurrency key, across the cluster.
    pub concurrency_key_limit: i32,
    /// Most steps a workflow may hold with those its steps add.
    pub max_workflow_steps: usize,
}

impl WorkerConfig {
    /// The backoff for a type: its own, or the default.
    pub fn retry_for(&self, kind: &TaskType) -> RetryPolicy {
        self.task_types.retry_policy(kind, None, self.retry)
    }

    /// Uses `types`, with a handler for each type weir runs itself (and
    /// keeps the Rust handlers registered before).
    pub fn with_task_types(mut self, types: TaskTypes) -> Result<Self, HandlerSetupError> {
        let mut handlers = Handlers::from_types(&types)?;
        handlers.extend_registered(&self.handlers);
        self.handlers = handlers;
        self.task_types = Arc::new(types);
        Ok(self)
    }

    /// Defaults for a worker named `worker_id`.
    pub fn new(worker_id: impl Into<String>) -> Self {
        WorkerConfig {
            worker_id: worker_id.into(),
            concurrency: 4,
            lease: Duration::from_secs(15),
            poll_interval: Duration::from_millis(500),
            heartbeat_interval: Duration::from_secs(2),
            rescue_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            cache_ttl: Duration::from_secs(3600),
            retry: RetryPolicy::default(),
            task_types: Arc::new(TaskTypes::default()),
            handlers: Handlers::from_types(&TaskTypes::default())
                .expect("built-in handlers need no setup"),
            maintenance_interval: Duration::from_secs(30),
            retention: Duration::from_secs(24 * 3600),
            retain_dead: Duration::from_secs(7 * 24 * 3600),
            retain_cancelled: Duration::from_secs(24 * 3600),
            worker_offline_after: Duration::from_secs(30),
            periodic: Vec::new(),
            scheduler_interval: Duration::from_secs(1),
            queues: None,
            queue_limits: Vec::new(),
            concurrency_key_limit: 1,
            max_workflow_steps: weir_core::DEFAULT_MAX_WORKFLOW_STEPS,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_types_own_backoff_wins() {
        let fast = RetryPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(100),
        };
        let mut types = TaskTypes::default();
        types.set_retry_backoff("flaky", fast).unwrap();
        let c = WorkerConfig::new("w").with_task_types(types).unwrap();
        let flaky = TaskType::new("flaky").unwrap();
        assert_eq!(c.retry_for(&flaky), fast);
        assert_eq!(
            c.retry_for(&TaskType::new("md5").unwrap()),
            RetryPolicy::default()
        );
    }
}
