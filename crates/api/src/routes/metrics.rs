//! `GET /metrics`: this process's metrics in Prometheus text format, with the
//! cluster's task counts read from the store at scrape time.
//!
//! Request durations are recorded by [`crate::request_log`]; in `weir up` the
//! workers share the process, so their counters show here too.
//!
//! Queues' series stay at 0 once a queue empties (the set is bounded below).
//! Task types' series are of this scrape only ([`weir_telemetry::render_scoped`]):
//! a type shows while tasks of it are queued or an online worker runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use metrics::gauge;
use weir_core::{WorkerStatus, WorkflowStatus};

use crate::{ApiError, AppState};

/// Most emptied queues kept reported at 0.
const MAX_SEEN_QUEUES: usize = 1024;

/// Queues this process has reported, so one that empties is set back to 0.
static SEEN_QUEUES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

#[utoipa::path(get, path = "/metrics", tag = "nodes",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn render(State(state): State<AppState>) -> Result<Response, ApiError> {
    weir_telemetry::install();
    let now = Utc::now();
    let c = state.store.task_counts().await?;
    for (status, n) in [
        ("queued", c.queued),
        ("running", c.running),
        ("succeeded", c.succeeded),
        ("dead", c.dead),
        ("cancelled", c.cancelled),
        ("waiting", c.waiting),
    ] {
        gauge!("weir_tasks", "state" => status).set(n as f64);
    }
    let workflows = state.store.workflow_counts().await?;
    for status in [
        WorkflowStatus::Running,
        WorkflowStatus::Succeeded,
        WorkflowStatus::Failed,
        WorkflowStatus::Cancelled,
    ] {
        let n = workflows
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        gauge!("weir_workflows_total", "status" => status.as_str()).set(n as f64);
    }
    let depths = state.store.queue_depths().await?;
    let limits = state.store.queue_list().await?;
    record_queues(depths, &limits, now);
    let types = type_series(&state, now).await?;
    let mut text = weir_telemetry::render();
    text.push_str(&weir_telemetry::render_scoped(|| {
        for (kind, (queued, workers)) in types {
            if let Some(n) = queued {
                gauge!("weir_task_type_queued", "type" => kind.clone()).set(n as f64);
            }
            gauge!("weir_task_type_workers", "type" => kind).set(workers as f64);
        }
    }));
    Ok(([(header::CONTENT_TYPE, weir_telemetry::CONTENT_TYPE)], text).into_response())
}

/// Each queue's depth, oldest wait and paused state. A sync function: the
/// set of queues seen is locked only here, never across an await.
fn record_queues(
    depths: Vec<weir_core::QueueDepth>,
    limits: &[weir_core::QueueLimits],
    now: DateTime<Utc>,
) {
    let depths_names: Vec<String> = depths.iter().map(|d| d.queue.clone()).collect();
    // A queue that emptied is reported as 0, not left at its last depth.
    let mut seen = SEEN_QUEUES.lock().unwrap_or_else(|e| e.into_inner());
    for q in seen
        .iter()
        .filter(|q| !depths.iter().any(|d| &d.queue == *q))
    {
        gauge!("weir_queue_depth", "queue" => q.clone(), "state" => "queued").set(0.0);
        gauge!("weir_queue_depth", "queue" => q.clone(), "state" => "running").set(0.0);
        gauge!("weir_queue_oldest_wait_seconds", "queue" => q.clone()).set(0.0);
    }
    for d in depths {
        gauge!("weir_queue_depth", "queue" => d.queue.clone(), "state" => "queued")
            .set(d.queued as f64);
        gauge!("weir_queue_depth", "queue" => d.queue.clone(), "state" => "running")
            .set(d.running as f64);
        gauge!("weir_queue_oldest_wait_seconds", "queue" => d.queue.clone())
            .set(waited(d.oldest_queued_at, now));
        seen.insert(d.queue);
    }
    // A paused queue waits by design: alerts on its wait leave it out.
    for name in depths_names.iter().chain(limits.iter().map(|l| &l.name)) {
        let paused = limits.iter().any(|l| &l.name == name && l.paused);
        gauge!("weir_queue_paused", "queue" => name.clone()).set(if paused { 1.0 } else { 0.0 });
    }
    // Queue names come from submissions; past a bound, emptied ones are no
    // longer kept at 0 (their series go stale) so the set cannot grow forever.
    if seen.len() > MAX_SEEN_QUEUES {
        let live: BTreeSet<&str> = depths_names.iter().map(String::as_str).collect();
        seen.retain(|q| live.contains(q.as_str()));
    }
}

/// Seconds the oldest queued task has been due; 0 when none is (nothing
/// queued, or only tasks that run later).
fn waited(oldest_run_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> f64 {
    oldest_run_at.map_or(0.0, |at| {
        (now - at).num_milliseconds().max(0) as f64 / 1000.0
    })
}

/// Each task type with queued tasks or an online worker that runs it: how
/// many are queued (`None`: none) and how many online workers run it. A
/// type queued with no worker waits forever, however many workers run
/// (`weir status` says the same).
async fn type_series(
    state: &AppState,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, (Option<i64>, u64)>, ApiError> {
    let mut types: BTreeMap<String, (Option<i64>, u64)> = BTreeMap::new();
    for (kind, n) in state.store.task_queued_by_type().await? {
        types.entry(kind).or_default().0 = Some(n);
    }
    let workers =
        super::workers::worker_list(state.store.as_ref(), state.config.worker_offline_after, now)
            .await?;
    for w in workers
        .workers
        .iter()
        .filter(|w| w.status == WorkerStatus::Online)
    {
        for kind in &w.task_types {
            types.entry(kind.clone()).or_default().1 += 1;
        }
    }
    Ok(types)
}
