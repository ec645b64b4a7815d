//! weir's workers: each claims tasks from the store under a lease, runs up to
//! `concurrency` of them at once, reports outcomes in batches, heartbeats, and on
//! shutdown drains: stops claiming, lets running tasks finish within a grace
//! period, and hands back what is left.
//!
//! # Layout
//! - [`config`]: [`WorkerConfig`] and its defaults.
//! - [`worker`]: [`run`], the claim → execute → complete loop of one worker.
//! - [`completer`]: records finished attempts in batches, off the claim path.
//! - `prefetch`: claiming ahead of free slots when tasks are shorter than a
//!   claim, without hoarding long ones.
//! - [`handler`]: the [`Handler`] trait every task type's code implements
//!   (async; gets the input, attempt, a progress handle and a cancellation
//!   signal; succeeds, fails retryably or permanently).
//! - [`handlers`]: the handlers weir runs itself — built-in, `http`, `command`.
//! - [`registry`]: [`Handlers`], a handler per task type: the registry a
//!   worker claims by.
//! - [`maintenance`]: background services; [`maintenance::rescuer`] takes back
//!   tasks whose lease expired, [`maintenance::cleaner`] (on the leader only)
//!   deletes old finished tasks and expired cache entries.

pub mod completer;
pub mod config;
pub mod handler;
pub mod handlers;
pub mod maintenance;
mod prefetch;
pub mod registry;
pub mod worker;

pub use config::WorkerConfig;
pub use handler::{Handler, HandlerError, Job, Progress, WorkflowSteps};
pub use registry::{HandlerSetupError, Handlers};
pub use worker::{run, WorkerReport};
