//! weir's store logic, whatever the database: the one implementation of every
//! store role ([`SqlStore`]) over a narrow per-dialect [`Driver`], and the
//! batching in front of it that turns many concurrent writes into few
//! transactions. No SQL driver here: the dialects live in `weir-store-sql`.
//!
//! # Layout
//! - [`driver`]: the [`Driver`] and [`DriverTx`] traits a dialect implements;
//!   [`workflow_tx`]: [`WorkflowTx`], the workflow graph's steps within a
//!   `DriverTx`.
//! - [`sql_store`]: [`SqlStore`], the policy — claim admission, folded and
//!   idempotent submissions, wake-ups, the leader lease, pruning.
//! - [`busy_retry`]: [`BusyRetry`], riding out a busy database within a budget.
//! - [`group_commit`]: [`RequestLogWriter`], [`TaskInsertWriter`] and
//!   [`EventWriter`], group commit for request-log rows, task submissions and events.
//! - [`cache_access`]: [`CacheAccessRecorder`], cache hit/miss statistics in batches.
//! - [`submission`]: [`Submitter`], what a submission becomes (cache hit,
//!   idempotency key, de-duplication), for the API and the scheduler alike.
//! - [`readiness`]: [`Readiness`], what every role's `/health/ready` answers.
//! - `hints`: the claim's small rules (lease ends, token buckets) and memories.

pub mod busy_retry;
pub mod cache_access;
pub mod driver;
pub mod group_commit;
mod hints;
pub mod readiness;
pub mod sql_store;
pub mod submission;
pub mod workflow_tx;

pub use busy_retry::BusyRetry;
pub use cache_access::CacheAccessRecorder;
pub use driver::{
    AppliedCompletion, BulkProgress, BulkRow, Claimed, CompletedOutside, Driver, DriverTx, HeldKey,
    LimitedQueue, LiveByQueue, Rescued, StandingTask, Wakeups,
};
pub use group_commit::{EventWriter, GroupCommit, RequestLogWriter, TaskInsertWriter};
pub use hints::lease_end;
pub use readiness::{NotReady, Readiness};
pub use sql_store::SqlStore;
pub use submission::{
    StepSubmission, StepsAdder, Submission, SubmitError, Submitted, SubmittedWorkflow, Submitter,
    WorkflowError, WorkflowSubmission,
};
pub use workflow_tx::{
    EndedStep, NamedStep, ParentOutcome, ReadyStep, StepCancel, StepChild, WorkflowCounts,
    WorkflowTx,
};
