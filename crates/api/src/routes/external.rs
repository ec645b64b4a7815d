//! Workers in any language pull work over HTTP (`handler = "external"`),
//! under the same leases and fencing as weir's own workers:
//!
//! - `POST /workers/{worker_id}/claim` long-polls for up to `max` tasks of
//!   the named types; each comes with a `lease_token`.
//! - `POST /tasks/{id}/heartbeat` extends the lease (and reports progress).
//! - `POST /tasks/{id}/complete` and `POST /tasks/{id}/fail` end the attempt.
//!
//! A stale token (the lease lapsed and the task was rescued, or it was
//! cancelled) gets 409 `lease_lost` and changes nothing. An attempt past its
//! type's timeout is failed at its next heartbeat (`timed out after …`), so
//! a hung external worker cannot hold a task by heartbeating alone. Every call needs
//! `Authorization: Bearer <worker token>`: claiming reveals inputs.

use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::Json;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use weir_core::{
    Attempt, AttemptDefaults, AttemptEnd, CompletionOutcome, Task, TaskClaimParams, TaskCompletion,
    TaskId, TaskLeaseExtendParams, TaskOutcome, TaskState, TaskType, WorkerHeartbeatParams,
    WorkerStatus, WorkflowId,
};

use crate::body::JsonBody;
use crate::schema::ErrorBody;
use crate::{ApiError, AppState};

/// Longest a claim may wait for work.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting claim looks again when no wake-up arrives.
const POLL: Duration = Duration::from_millis(500);
/// Most tasks one claim takes.
const MAX_CLAIM: u32 = 100;
/// The shortest and longest lease a claim or heartbeat may ask for.
const LEASE_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));
/// Longest worker id.
const MAX_WORKER_ID_BYTES: usize = 128;
/// Longest error message kept from a failing attempt.
const MAX_ERROR_BYTES: usize = 4096;

/// The `Authorization: Bearer <worker token>` every call here needs,
/// compared in constant time.
pub struct WorkerAuth;

impl FromRequestParts<AppState> for WorkerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized = |code, message: &str| ApiError::Unauthorized {
            code,
            message: message.to_owned(),
        };
        let Some(expected) = &state.config.worker_token else {
            return Err(unauthorized(
                "worker_token_not_configured",
                "external workers are off: start the API nodes with --worker-token",
            ));
        };
        if crate::api_keys::bearer(&parts.headers).is_none() {
            return Err(unauthorized(
                "missing_token",
                "Authorization: Bearer <worker token> is required",
            ));
        }
        if crate::api_keys::is_worker_token(&parts.headers, Some(expected)) {
            Ok(WorkerAuth)
        } else {
            Err(unauthorized(
                "invalid_token",
                "the worker token is not the one configured",
            ))
        }
    }
}

/// A duration as a string (`"20s"`) or a number of seconds.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Wait {
    Seconds(f64),
    Text(String),
}

impl Wait {
    pub(crate) fn parse(&self, field: &str) -> Result<Duration, ApiError> {
        let d = match self {
            Wait::Seconds(s) if s.is_finite() && *s >= 0.0 => Duration::try_from_secs_f64(*s).ok(),
            Wait::Seconds(_) => None,
            Wait::Text(t) => humantime::parse_duration(t.trim()).ok(),
        };
        d.ok_or_else(|| {
            ApiError::bad_request(
                "invalid_input",
                format!("{field} is not a duration (\"20s\" or seconds)"),
            )
        })
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The types this worker runs (each must be registered).
    types: Vec<String>,
    /// Only these queues (default: every queue).
    queues: Option<Vec<String>>,
    /// Most tasks to take (1 to 100, default 1).
    max: Option<u32>,
    /// How long to wait for work when none is due (up to 30 s; default 0).
    #[schema(value_type = Option<String>, example = "20s")]
    wait: Option<Wait>,
    /// The lease each task holds until a heartbeat (1 s to 1 h; default 30 s).
    #[schema(value_type = Option<String>, example = "30s")]
    lease: Option<Wait>,
    /// The worker's own counters and start, shown in `GET /workers`.
    processed: Option<i64>,
    failed: Option<i64>,
    started_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct ClaimedTaskView {
    pub id: TaskId,
    #[serde(rename = "type")]
    pub kind: TaskType,
    #[schema(value_type = Object)]
    pub input: Value,
    /// This attempt's number, from 1.
    pub attempt: i32,
    pub max_attempts: i32,
    /// Present it with every heartbeat, completion and failure.
    pub lease_token: i64,
    pub lease_expires_at: DateTime<Utc>,
    /// The attempt's time limit: stop and fail it past this.
    pub timeout_ms: u64,
    /// The workflow it is a step of, if it is one: where
    /// `POST /workflows/{id}/steps` adds steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<WorkflowId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    /// The W3C trace context to continue (the span that queued the task):
    /// send it on as the `traceparent` header, or start the attempt's span
    /// under it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The trace's vendor state, sent on as the `tracestate` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ClaimAnswer {
    pub tasks: Vec<ClaimedTaskView>,
}

fn valid_worker_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_WORKER_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_worker_id",
            format!("a worker id is 1 to {MAX_WORKER_ID_BYTES} visible ASCII characters"),
        ))
    }
}

fn lease_from(lease: Option<&Wait>, state: &AppState) -> Result<Duration, ApiError> {
    let d = match lease {
        Some(l) => l.parse("lease")?,
        None => state.config.external_lease,
    };
    if d < LEASE_RANGE.0 || d > LEASE_RANGE.1 {
        return Err(ApiError::bad_request(
            "invalid_input",
            "lease must be from 1s to 1h",
        ));
    }
    Ok(d)
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// `POST /workers/{worker_id}/claim`.
#[utoipa::path(post, path = "/workers/{worker_id}/claim", tag = "external",
    params(("worker_id" = String, Path, description = "The external worker's id, shown in GET /workers")),
    request_body = ClaimRequest,
    responses(
        (status = 200, description = "Tasks now leased to this worker (possibly none, after waiting)", body = ClaimAnswer),
        (status = 400, description = "Unknown type or malformed request", body = ErrorBody),
        (status = 401, description = "No or a wrong worker token", body = ErrorBody)))]
pub async fn claim(
    _auth: WorkerAuth,
    State(state): State<AppState>,
    Path(worker_id): Path<String>,
    JsonBody(body): JsonBody<ClaimRequest>,
) -> Result<Json<ClaimAnswer>, ApiError> {
    valid_worker_id(&worker_id)?;
    if body.types.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_input",
            "types must name at least one task type",
        ));
    }
    let mut types = Vec::with_capacity(body.types.len());
    for t in &body.types {
        types.push(state.config.task_types.get(t)?.spec.name.to_string());
    }
    let max = body.max.unwrap_or(1);
    if !(1..=MAX_CLAIM).contains(&max) {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("max must be from 1 to {MAX_CLAIM}"),
        ));
    }
    let wait = match &body.wait {
        Some(w) => w.parse("wait")?.min(MAX_WAIT),
        None => Duration::ZERO,
    };
    let lease = lease_from(body.lease.as_ref(), &state)?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut inserted = state.store.task_inserted();
    let claimed = loop {
        let params = TaskClaimParams {
            worker_id: worker_id.clone(),
            max,
            now: Utc::now(),
            lease,
            queues: body.queues.clone(),
            key_limit: 1,
            types: Some(types.clone()),
        };
        let tasks = state.store.task_claim(params).await?;
        let now = tokio::time::Instant::now();
        if !tasks.is_empty() || now >= deadline {
            break tasks;
        }
        let pause = (deadline - now).min(POLL);
        tokio::select! {
            _ = inserted.changed() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    };
    let now = Utc::now();
    let heartbeat = WorkerHeartbeatParams {
        worker_id: worker_id.clone(),
        status: WorkerStatus::Online,
        concurrency: max as i32,
        active_tasks: claimed.len() as i32,
        current_task: claimed.first().map(|t| t.id.to_string()),
        processed: body.processed.unwrap_or(0),
        failed: body.failed.unwrap_or(0),
        started_at: body.started_at.unwrap_or(now),
        now,
        task_types: types,
    };
    if let Err(e) = state.store.worker_heartbeat(heartbeat).await {
        tracing::warn!(worker = %worker_id, error = %e, "external worker's registry row not updated");
    }
    let lease_expires_at = now + to_chrono(lease);
    // The claim holds the tasks already: a failed lookup leaves the ids
    // out rather than losing the answer.
    let ids: Vec<TaskId> = claimed.iter().map(|t| t.id).collect();
    let mut steps: std::collections::HashMap<TaskId, (WorkflowId, String)> = state
        .store
        .steps_of_tasks(&ids)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "claimed steps' workflow ids not found");
            Vec::new()
        })
        .into_iter()
        .map(|(task, workflow, step)| (task, (workflow, step)))
        .collect();
    let tasks = claimed
        .into_iter()
        .map(|t| {
            let (workflow_id, step_id) = steps.remove(&t.id).unzip();
            let types = &state.config.task_types;
            let timeout = types.attempt_timeout(&t.kind, t.timeout);
            // The worker running the attempt gets the secrets in clear; one
            // sealed with another key stays redacted (and fails there).
            let mut input = t.input;
            if types.open_input(&mut input).is_err() {
                weir_core::secrets::redact(&mut input);
            }
            let trace = t
                .trace
                .as_deref()
                .and_then(weir_trace::TraceContext::from_stored);
            if let Some(parent) = &trace {
                weir_trace::queue_wait(parent, t.run_at.into());
            }
            let (traceparent, tracestate) = trace
                .map(|c| (Some(c.traceparent()), c.tracestate))
                .unwrap_or_default();
            ClaimedTaskView {
                timeout_ms: timeout.as_millis() as u64,
                id: t.id,
                kind: t.kind,
                input,
                attempt: t.attempt,
                max_attempts: t.max_attempts,
                lease_token: t.lease_token,
                lease_expires_at,
                workflow_id,
                step_id,
                traceparent,
                tracestate,
            }
        })
        .collect();
    Ok(Json(ClaimAnswer { tasks }))
}

fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "task_not_found",
        message: "no task with that id".into(),
    }
}

fn lease_lost() -> ApiError {
    ApiError::Conflict {
        code: "lease_lost",
        message: "this attempt no longer holds the task (its lease lapsed and it was rescued, or it was cancelled or finished); nothing was changed".into(),
    }
}

/// The task `id` if it is running; whether this attempt's token still
/// holds it the store checks atomically with the change.
async fn held(state: &AppState, id: &str) -> Result<Task, ApiError> {
    let id: TaskId = id.parse().map_err(|_| not_found())?;
    let task = state.store.task_get(id).await?.ok_or_else(not_found)?;
    if task.state != TaskState::Running {
        return Err(lease_lost());
    }
    Ok(task)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    lease_token: i64,
    /// 0 to 100.
    progress: Option<u8>,
    /// Extend by this much (default: the claim's default lease).
    #[schema(value_type = Option<String>, example = "30s")]
    lease: Option<Wait>,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptAnswer {
    pub task_id: TaskId,
    pub status: TaskState,
    /// Heartbeats: until when the lease now holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// `POST /tasks/{id}/heartbeat`.
#[utoipa::path(post, path = "/tasks/{id}/heartbeat", tag = "external",
    params(("id" = String, Path, description = "The task's id")),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "Lease extended", body = AttemptAnswer),
        (status = 401, description = "No or a wrong worker token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "lease_lost: stop working on it", body = ErrorBody)))]
pub async fn heartbeat(
    _auth: WorkerAuth,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<HeartbeatRequest>,
) -> Result<Json<AttemptAnswer>, ApiError> {
    let task = held(&state, &id).await?;
    let lease = lease_from(body.lease.as_ref(), &state)?;
    let now = Utc::now();
    let own = task
        .timeout_ms
        .map(|ms| Duration::from_millis(ms.max(1) as u64));
    let timeout = state.config.task_types.attempt_timeout(&task.kind, own);
    if task
        .started_at
        .is_some_and(|s| now - s > to_chrono(timeout))
    {
        let outcome = attempt_outcome(&state, &task, AttemptEnd::TimedOut(timeout), now);
        let error = match &outcome {
            TaskOutcome::Failed { error, .. } => error.clone(),
            TaskOutcome::Succeeded { .. } => String::new(),
        };
        record(&state, &task, body.lease_token, outcome, now).await?;
        return Err(ApiError::Conflict {
            code: "lease_lost",
            message: format!("the attempt {error} and was failed; stop working on it"),
        });
    }
    let lease_expires_at = now + to_chrono(lease);
    let still = state
        .store
        .task_lease_extend(TaskLeaseExtendParams {
            worker_id: task.worker_id.clone().unwrap_or_default(),
            tasks: vec![(task.id, body.lease_token)],
            lease_expires_at,
            progress: body
                .progress
                .map(|p| vec![(task.id, i16::from(p.min(100)))])
                .unwrap_or_default(),
        })
        .await?;
    if !still.contains(&task.id) {
        return Err(lease_lost());
    }
    Ok(Json(AttemptAnswer {
        task_id: task.id,
        status: TaskState::Running,
        lease_expires_at: Some(lease_expires_at),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    lease_token: i64,
    #[schema(value_type = Object)]
    result: Value,
}

/// `POST /tasks/{id}/complete`.
#[utoipa::path(post, path = "/tasks/{id}/complete", tag = "external",
    params(("id" = String, Path, description = "The task's id")),
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "Succeeded; the result is stored", body = AttemptAnswer),
        (status = 401, description = "No or a wrong worker token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "lease_lost: the result was not recorded", body = ErrorBody)))]
pub async fn complete(
    _auth: WorkerAuth,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CompleteRequest>,
) -> Result<Json<AttemptAnswer>, ApiError> {
    let task = held(&state, &id).await?;
    let now = Utc::now();
    let outcome = attempt_outcome(&state, &task, AttemptEnd::Succeeded(body.result), now);
    record(&state, &task, body.lease_token, outcome, now).await?;
    Ok(Json(AttemptAnswer {
        task_id: task.id,
        status: TaskState::Succeeded,
        lease_expires_at: None,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    lease_token: i64,
    error: String,
    /// false: the input will never work, dead at once (default true).
    retry: Option<bool>,
    /// Try again no sooner than this (capped by the backoff's cap).
    #[schema(value_type = Option<String>, example = "30s")]
    retry_after: Option<Wait>,
}

/// `POST /tasks/{id}/fail`.
#[utoipa::path(post, path = "/tasks/{id}/fail", tag = "external",
    params(("id" = String, Path, description = "The task's id")),
    request_body = FailRequest,
    responses(
        (status = 200, description = "Recorded: queued again (retry) or dead", body = AttemptAnswer),
        (status = 401, description = "No or a wrong worker token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "lease_lost: nothing was recorded", body = ErrorBody)))]
pub async fn fail(
    _auth: WorkerAuth,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<FailRequest>,
) -> Result<Json<AttemptAnswer>, ApiError> {
    let task = held(&state, &id).await?;
    let retry_after = body
        .retry_after
        .as_ref()
        .map(|w| w.parse("retry_after"))
        .transpose()?;
    let now = Utc::now();
    let mut error = body.error;
    if error.len() > MAX_ERROR_BYTES {
        let mut cut = MAX_ERROR_BYTES;
        while !error.is_char_boundary(cut) {
            cut -= 1;
        }
        error.truncate(cut);
    }
    let end = AttemptEnd::Failed {
        error,
        permanent: !body.retry.unwrap_or(true),
        retry_after,
    };
    let outcome = attempt_outcome(&state, &task, end, now);
    let status = match &outcome {
        TaskOutcome::Failed {
            retry_at: Some(_), ..
        } => TaskState::Queued,
        _ => TaskState::Dead,
    };
    record(&state, &task, body.lease_token, outcome, now).await?;
    Ok(Json(AttemptAnswer {
        task_id: task.id,
        status,
        lease_expires_at: None,
    }))
}

/// What `end` makes of the external worker's attempt: the same decision a
/// built-in worker makes (`TaskTypes::attempt_outcome`), with this node's
/// defaults.
fn attempt_outcome(
    state: &AppState,
    task: &Task,
    end: AttemptEnd,
    now: DateTime<Utc>,
) -> TaskOutcome {
    let attempt = Attempt {
        kind: &task.kind,
        input: &task.input,
        attempt: task.attempts,
        max_attempts: task.max_attempts,
        backoff: task.retry_backoff,
        tenant: task.tenant.as_deref(),
    };
    let defaults = AttemptDefaults {
        retry: state.config.retry_backoff,
        cache_ttl: state.config.cache_ttl,
    };
    state
        .config
        .task_types
        .attempt_outcome(&attempt, end, &defaults, now, rand::thread_rng().gen())
}

/// Records one attempt's outcome, fenced by its lease token.
async fn record(
    state: &AppState,
    task: &Task,
    lease_token: i64,
    outcome: TaskOutcome,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let completion = TaskCompletion {
        id: task.id,
        lease_token,
        outcome,
        now,
    };
    match state.store.task_complete_many(&[completion]).await?.first() {
        Some(CompletionOutcome::Applied) => Ok(()),
        _ => Err(lease_lost()),
    }
}
