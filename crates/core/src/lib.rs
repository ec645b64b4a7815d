//! weir's domain: what a task, a worker and a logged request are, and the one
//! interface every storage backend implements.
//!
//! This crate holds no I/O: no database driver, no HTTP, no runtime. The API
//! nodes, the workers and the storage backends all speak in these types.
//!
//! # Layout
//! - [`ids`]: [`TaskId`] and [`WorkflowId`], time-ordered.
//! - [`task`]: [`Task`], [`TaskState`] (and who moves a task out of each state).
//! - [`task_type`]: [`TaskType`] and the registry of configured types ([`TaskTypes`]).
//! - [`builtin`]: the handlers compiled into weir ([`Builtin`]) and their input rules.
//! - [`input`]: [`InputError`], what every check of a submission's type and input returns.
//! - [`retry`]: [`RetryPolicy`], exponential backoff with full jitter.
//! - [`attempt`]: what an attempt's end makes of its task ([`AttemptEnd`] →
//!   `TaskOutcome`), decided once for every runner.
//! - [`worker`]: a worker's registry row as the store keeps it.
//! - [`request_log`]: one logged HTTP request, and per-node counts.
//! - [`event`]: ingested events ([`NewEvent`] on the way in, [`StoredEvent`] out).
//! - [`workflow`]: workflows — [`Workflow`], their
//!   statuses, and [`check_graph`], which refuses cycles and unknown parents.
//! - [`store`]: the [`Store`] trait, its params structs and [`StoreError`].

/// A newtype over a UUIDv7 id: time-ordered (ids sort by creation and
/// index well), shown and parsed as the UUID, serialized as it.
macro_rules! time_ordered_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone,
            Copy,
            Debug,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            serde::Serialize,
            serde::Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                $name(uuid::Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map($name)
            }
        }
    };
}

pub mod attempt;
pub mod audit;
pub mod builtin;
pub mod bulk;
pub mod event;
pub mod ids;
pub mod input;
pub mod input_schema;
pub mod request_log;
pub mod retry;
pub mod secrets;
pub mod store;
pub mod task;
pub mod task_filter;
pub mod task_type;
pub mod worker;
pub mod workflow;

pub use attempt::{Attempt, AttemptDefaults, AttemptEnd};
pub use audit::{AuditEntry, AuditListParams};
pub use builtin::Builtin;
pub use bulk::{BulkAction, BulkJob, NewBulk};
pub use event::{NewEvent, StoredEvent};
pub use ids::{BulkId, TaskId, WorkflowId};
pub use input::InputError;
pub use request_log::{NodeRequestCount, RequestLogEntry, RequestLogStats};
pub use retry::RetryPolicy;
pub use secrets::{KeyOrigin, OpenError, Sealer};
pub use store::{
    AuditLog, CacheAccessParams, CacheEntryStats, CacheStats, CompletionOutcome, EventLog,
    FinishedCounts, IdempotencyKey, LeaderAcquireParams, Leadership, MaintenancePruneParams,
    MaintenancePruneReport, NewStep, NewSteps, NewWorkflow, QueueDepth, QueueLimits, Queued,
    RequestLog, ResultCache, StepsAdded, Store, StoreError, TaskAdmin, TaskChange, TaskClaimParams,
    TaskCompletion, TaskCounts, TaskInsertParams, TaskLeaseExtendParams, TaskOutcome, TaskQueue,
    TaskReleaseParams, TaskRescueParams, WorkerHeartbeatParams, WorkerRegistry, Workflows,
};
pub use task::{AttemptError, ClaimedTask, Task, TaskState, DEFAULT_MAX_ATTEMPTS};
pub use task_filter::{TaskCursor, TaskFilter, TaskListParams, TaskSort};
pub use task_type::{
    tenant_scoped, CacheWrite, HandlerSpec, RegisteredType, TaskType, TaskTypeConfig,
    TaskTypeDefaults, TaskTypeError, TaskTypeSpec, TaskTypeView, TaskTypes,
};
pub use worker::{WorkerInfo, WorkerStatus};
pub use workflow::{
    check_graph, GraphError, ParentFailure, Workflow, WorkflowListParams, WorkflowStatus,
    WorkflowStep, DEFAULT_MAX_WORKFLOW_STEPS,
};
