//! `GET /metrics`: this process's metrics in Prometheus text format, with the
//! cluster's task counts read from the store at scrape time.
//!
//! Request durations are recorded by [`crate::request_log`]; in `weir up` the
//! workers share the process, so their counters show here too.

use std::collections::BTreeSet;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics::gauge;
use weir_core::WorkflowStatus;

use crate::{ApiError, AppState};

/// Most emptied queues kept reported at 0.
const MAX_SEEN_QUEUES: usize = 1024;

/// Queues this process has reported, so one that empties is set back to 0.
static SEEN_QUEUES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

#[utoipa::path(get, path = "/metrics", tag = "nodes",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn render(State(state): State<AppState>) -> Result<Response, ApiError> {
    weir_telemetry::install();
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
    let depths_names: Vec<String> = depths.iter().map(|d| d.queue.clone()).collect();
    // A queue that emptied is reported as 0, not left at its last depth.
    let mut seen = SEEN_QUEUES.lock().unwrap_or_else(|e| e.into_inner());
    for q in seen
        .iter()
        .filter(|q| !depths.iter().any(|d| &d.queue == *q))
    {
        gauge!("weir_queue_depth", "queue" => q.clone(), "state" => "queued").set(0.0);
        gauge!("weir_queue_depth", "queue" => q.clone(), "state" => "running").set(0.0);
    }
    for d in depths {
        gauge!("weir_queue_depth", "queue" => d.queue.clone(), "state" => "queued")
            .set(d.queued as f64);
        gauge!("weir_queue_depth", "queue" => d.queue.clone(), "state" => "running")
            .set(d.running as f64);
        seen.insert(d.queue);
    }
    // Queue names come from submissions; past a bound, emptied ones are no
    // longer kept at 0 (their series go stale) so the set cannot grow forever.
    if seen.len() > MAX_SEEN_QUEUES {
        let live: BTreeSet<&str> = depths_names.iter().map(String::as_str).collect();
        seen.retain(|q| live.contains(q.as_str()));
    }
    drop(seen);
    Ok((
        [(header::CONTENT_TYPE, weir_telemetry::CONTENT_TYPE)],
        weir_telemetry::render(),
    )
        .into_response())
}
