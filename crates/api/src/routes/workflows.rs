//! Workflows: `POST /workflows`, `GET /workflows/{id}`, `GET /workflows`,
//! `POST /workflows/{id}/cancel`, and `POST /workflows/{id}/steps`, where a
//! running step adds steps to its own workflow (a batch).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use weir_core::{
    GraphError, ParentFailure, TaskId, Workflow, WorkflowId, WorkflowListParams, WorkflowStatus,
};
use weir_store::{StepSubmission, StepsAdder, Submission, WorkflowError, WorkflowSubmission};

use super::external::Wait;
use super::tasks::{idempotency_key, parse_backoff, parse_timeout};
use crate::auth::Tenant;
use crate::body::JsonBody;
use crate::schema::ErrorBody;
use crate::trace::RequestTrace;
use crate::{ApiError, AppState};

/// One step: a task of its type, and the steps it waits for.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitStep {
    /// Unique within the workflow: `A-Z a-z 0-9 _ . : -`, 1 to 128 bytes.
    #[schema(example = "fetch")]
    id: String,
    /// A registered type, as for `POST /tasks`.
    #[serde(rename = "type")]
    #[schema(example = "md5")]
    kind: String,
    #[schema(value_type = Object, example = json!({"string": "hello"}))]
    input: Value,
    /// Steps that must end before this one runs.
    #[serde(default)]
    depends_on: Vec<String>,
    /// `cancel` (default): a parent that does not succeed cancels this step;
    /// `run`: it runs once every parent has ended, however.
    #[serde(default)]
    on_parent_failure: ParentFailure,
    /// Its input gets `"parents": {"<step id>": <result>}` (a failed
    /// parent's entry is `{"error": …}`).
    #[serde(default)]
    with_parent_results: bool,
    max_attempts: Option<i32>,
    priority: Option<i32>,
    run_at: Option<DateTime<Utc>>,
    queue: Option<String>,
    concurrency_key: Option<String>,
    /// `BASE:CAP`, like `100ms:30s`.
    retry_backoff: Option<String>,
    /// A lower per-attempt time limit than the type's, like `30s`.
    timeout: Option<String>,
}

/// A workflow: steps and the order among them.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitWorkflow {
    name: Option<String>,
    idempotency_key: Option<String>,
    steps: Vec<SubmitStep>,
}

/// A stored workflow: its id and each step's task.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkflowAccepted {
    workflow_id: WorkflowId,
    status: WorkflowStatus,
    /// Step id → task id.
    steps: BTreeMap<String, TaskId>,
}

/// The steps of a request as the submitter takes them.
fn step_submissions(given: Vec<SubmitStep>) -> Result<Vec<StepSubmission>, ApiError> {
    let mut steps = Vec::with_capacity(given.len());
    for s in given {
        let task = Submission {
            kind: s.kind,
            input: s.input,
            max_attempts: s.max_attempts,
            priority: s.priority,
            run_at: s.run_at,
            idempotency_key: None,
            queue: s.queue,
            concurrency_key: s.concurrency_key,
            backoff: parse_backoff(s.retry_backoff)?,
            timeout: parse_timeout(s.timeout)?,
            tenant: None,
            trace: None,
        };
        steps.push(StepSubmission {
            id: s.id,
            task,
            depends_on: s.depends_on,
            on_parent_failure: s.on_parent_failure,
            with_parent_results: s.with_parent_results,
        });
    }
    Ok(steps)
}

impl From<WorkflowError> for ApiError {
    fn from(e: WorkflowError) -> Self {
        let message = e.to_string();
        match e {
            WorkflowError::Graph(g) => {
                let code = match g {
                    GraphError::Cycle(_) => "workflow_cycle",
                    GraphError::UnknownDependency { .. } => "unknown_dependency",
                    GraphError::DuplicateStep(_) => "duplicate_step",
                    GraphError::Empty => "empty_workflow",
                };
                ApiError::bad_request(code, message)
            }
            WorkflowError::InvalidStepId(_) => ApiError::bad_request("invalid_step_id", message),
            WorkflowError::Step { error, .. } => match ApiError::from(error) {
                ApiError::BadRequest { code, .. } => ApiError::bad_request(code, message),
                other => other,
            },
            WorkflowError::TooManySteps { .. } => ApiError::TooLarge {
                code: "too_many_steps",
                message,
            },
            WorkflowError::LeaseLost(_) => ApiError::Conflict {
                code: "lease_lost",
                message,
            },
            WorkflowError::NotAStep(_) => ApiError::NotFound {
                code: "step_not_found",
                message,
            },
            WorkflowError::StepExists(_) => ApiError::Conflict {
                code: "step_exists",
                message,
            },
            WorkflowError::NotRunning => ApiError::Conflict {
                code: "workflow_not_running",
                message,
            },
            WorkflowError::Store(e) => e.into(),
        }
    }
}

/// `POST /workflows`: every step checked before anything is stored, then
/// the whole workflow in one transaction.
#[utoipa::path(post, path = "/workflows", tag = "workflows", request_body = SubmitWorkflow,
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key within 24 h returns the same workflow")),
    responses(
        (status = 202, description = "Stored (durable): steps without parents queued, the others waiting", body = WorkflowAccepted),
        (status = 200, description = "An earlier submission under the same Idempotency-Key stored it (Idempotent-Replayed: true)", body = WorkflowAccepted),
        (status = 422, description = "The Idempotency-Key came with another request before", body = ErrorBody),
        (status = 400, description = "A cycle (`workflow_cycle`), an unknown parent, a repeated step id, or a step its type refuses", body = ErrorBody),
        (status = 413, description = "More steps than --max-workflow-steps, or a body over the limit", body = ErrorBody),
        (status = 503, description = "Database busy; retry after Retry-After", body = ErrorBody),
        (status = 507, description = "The database's disk is full; nothing stored", body = ErrorBody)))]
pub async fn submit(
    State(state): State<AppState>,
    tenant: Tenant,
    trace: RequestTrace,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SubmitWorkflow>,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers, body.idempotency_key)?;
    let steps = step_submissions(body.steps)?;
    let span = trace.enqueue("workflow");
    let submitted = state
        .submitter
        .submit_workflow(
            WorkflowSubmission {
                name: body.name,
                tenant: tenant.0,
                steps,
                idempotency_key,
                trace: span.as_ref().map(|span| span.context().to_stored()),
            },
            state.config.max_workflow_steps,
        )
        .await;
    if let Some(mut span) = span {
        if let Err(e) = &submitted {
            span.set_error(e.to_string());
        }
        span.end();
    }
    let submitted = submitted?;
    let location = [(header::LOCATION, format!("/workflows/{}", submitted.id))];
    if submitted.replayed {
        let status = state
            .store
            .workflow_get(submitted.id)
            .await?
            .map_or(WorkflowStatus::Running, |w| w.status);
        let body = WorkflowAccepted {
            workflow_id: submitted.id,
            status,
            steps: submitted.steps.into_iter().collect(),
        };
        let mut resp = (StatusCode::OK, location, Json(body)).into_response();
        resp.headers_mut().insert(
            "idempotent-replayed",
            header::HeaderValue::from_static("true"),
        );
        return Ok(resp);
    }
    let body = WorkflowAccepted {
        workflow_id: submitted.id,
        status: WorkflowStatus::Running,
        steps: submitted.steps.into_iter().collect(),
    };
    Ok((StatusCode::ACCEPTED, location, Json(body)).into_response())
}

/// Steps a running step adds to its own workflow.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSteps {
    /// The running step adding them.
    task_id: TaskId,
    /// Its attempt's lease token (a claim gives it; a Rust handler has it
    /// on its `Job`).
    lease_token: i64,
    /// As for `POST /workflows`; `depends_on` names steps of this list.
    steps: Vec<SubmitStep>,
}

/// Steps added: each step id with its task.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StepsAdded {
    workflow_id: WorkflowId,
    /// Step id → task id.
    steps: BTreeMap<String, TaskId>,
}

/// `POST /workflows/{id}/steps`: a running step adds steps to its own
/// workflow (a batch). Every step waiting on it waits on them too, so a
/// step after it runs once it and everything it added have ended. The same
/// step adding the same ids again (a retried attempt) stores nothing more.
#[utoipa::path(post, path = "/workflows/{id}/steps", tag = "workflows", request_body = AddSteps,
    params(("id" = String, Path, description = "The workflow's id")),
    responses(
        (status = 202, description = "Stored: steps without parents queued, the others waiting", body = StepsAdded),
        (status = 200, description = "This step added these ids before (Idempotent-Replayed: true)", body = StepsAdded),
        (status = 400, description = "A cycle, an unknown parent, a repeated step id, or a step its type refuses", body = ErrorBody),
        (status = 404, description = "No such workflow, or the task is no step of it", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the attempt no longer holds its task; `step_exists`: a step id taken; `workflow_not_running`: it is being cancelled", body = ErrorBody),
        (status = 413, description = "The workflow would hold more than --max-workflow-steps", body = ErrorBody)))]
pub async fn add_steps(
    State(state): State<AppState>,
    tenant: Tenant,
    trace: RequestTrace,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AddSteps>,
) -> Result<Response, ApiError> {
    let workflow: WorkflowId = id.parse().map_err(|_| not_found())?;
    let steps = step_submissions(body.steps)?;
    let adder = StepsAdder {
        workflow: Some(workflow),
        task: body.task_id,
        lease_token: body.lease_token,
        tenant: tenant.0,
        trace: trace.0.map(|t| t.to_stored()),
    };
    let added = state
        .submitter
        .add_steps(adder, steps, state.config.max_workflow_steps)
        .await?;
    let answer = StepsAdded {
        workflow_id: added.id,
        steps: added.steps.into_iter().collect(),
    };
    if added.replayed {
        let mut resp = (StatusCode::OK, Json(answer)).into_response();
        resp.headers_mut().insert(
            "idempotent-replayed",
            header::HeaderValue::from_static("true"),
        );
        return Ok(resp);
    }
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "workflow_not_found",
        message: "no workflow with that id".into(),
    }
}

/// A workflow the caller may see: another tenant's is not found.
async fn visible(
    state: &AppState,
    tenant: &Tenant,
    id: &str,
) -> Result<(WorkflowId, Workflow), ApiError> {
    let id: WorkflowId = id.parse().map_err(|_| not_found())?;
    let workflow = state
        .store
        .workflow_get(id)
        .await?
        .filter(|w| tenant.sees(w.tenant.as_deref()))
        .ok_or_else(not_found)?;
    Ok((id, workflow))
}

/// Longest `GET /workflows/{id}?wait=` holds.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a held `GET` looks again when no finish here wakes it (a
/// worker in another process may end the workflow).
const WAIT_POLL: Duration = Duration::from_millis(50);

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    /// Hold the answer until the workflow is no longer running, at most
    /// this long (`"20s"`, or seconds; up to 60 s).
    wait: Option<String>,
}

/// `GET /workflows/{id}`: the workflow and every step's state (and when
/// each started and ended); with `?wait=20s`, once it has finished or the
/// wait is over — a client waits in one request, not a poll loop.
#[utoipa::path(get, path = "/workflows/{id}", tag = "workflows",
    params(("id" = String, Path, description = "The workflow's id"), GetQuery),
    responses(
        (status = 200, description = "The workflow and its steps", body = Workflow),
        (status = 400, description = "A wait that is not a duration", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    Query(q): Query<GetQuery>,
) -> Result<Json<Workflow>, ApiError> {
    if let Some(wait) = q.wait {
        let wait = Wait::Text(wait).parse("wait")?.min(MAX_WAIT);
        let id: WorkflowId = id.parse().map_err(|_| not_found())?;
        wait_until_finished(&state, &tenant, id, wait).await?;
    }
    visible(&state, &tenant, &id).await.map(|(_, w)| Json(w))
}

/// Returns once workflow `id` is not running, or `wait` has passed. Woken
/// by finishes in this process; reads the workflow's row (not its steps)
/// each time.
async fn wait_until_finished(
    state: &AppState,
    tenant: &Tenant,
    id: WorkflowId,
    wait: Duration,
) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut finished = state.store.workflow_finished();
    loop {
        // Subscribed before the read: a finish between the two is not missed.
        let summary = state
            .store
            .workflow_summary(id)
            .await?
            .filter(|w| tenant.sees(w.tenant.as_deref()))
            .ok_or_else(not_found)?;
        let now = tokio::time::Instant::now();
        if summary.status != WorkflowStatus::Running || now >= deadline {
            return Ok(());
        }
        let pause = tokio::time::sleep((deadline - now).min(WAIT_POLL));
        tokio::pin!(pause);
        loop {
            tokio::select! {
                got = finished.recv() => match got {
                    Ok(other) if other != id => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => {
                        (&mut pause).await;
                        break;
                    }
                },
                _ = &mut pause => break,
            }
        }
    }
}

/// `POST /workflows/{id}/cancel`: steps not ended are cancelled; a running
/// one is fenced off as a task cancel does.
#[utoipa::path(post, path = "/workflows/{id}/cancel", tag = "workflows",
    params(("id" = String, Path, description = "The workflow's id")),
    responses(
        (status = 200, description = "Cancelled (or already finished: its status unchanged)", body = Workflow),
        (status = 404, description = "No such workflow", body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    tenant: Tenant,
    actor: crate::audit::Actor,
    Path(id): Path<String>,
) -> Result<Json<Workflow>, ApiError> {
    let (id, _) = visible(&state, &tenant, &id).await?;
    let workflow = state
        .store
        .workflow_cancel(id, Utc::now())
        .await?
        .ok_or_else(not_found)?;
    actor
        .record(&state, "workflow.cancel", Some(id.to_string()), None, None)
        .await;
    Ok(Json(workflow))
}

/// Most workflows one page holds.
const MAX_PAGE: i64 = 500;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `running`, `succeeded`, `failed` or `cancelled`.
    status: Option<String>,
    name: Option<String>,
    /// 1 to 500 (default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the page before.
    cursor: Option<String>,
}

/// A page of workflows, newest first, without their steps.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkflowPage {
    workflows: Vec<Workflow>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<WorkflowId>,
}

/// `GET /workflows?status=&name=&limit=&cursor=`.
#[utoipa::path(get, path = "/workflows", tag = "workflows", params(ListQuery),
    responses(
        (status = 200, description = "Newest first, without steps", body = WorkflowPage),
        (status = 400, description = "A bad filter or cursor", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    Query(q): Query<ListQuery>,
) -> Result<Json<WorkflowPage>, ApiError> {
    let status = q
        .status
        .map(|s| {
            s.parse::<WorkflowStatus>().map_err(|_| {
                ApiError::bad_request(
                    "invalid_status",
                    format!("{s:?} is not running, succeeded, failed or cancelled"),
                )
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be from 1 to {MAX_PAGE}"),
        ));
    }
    let before = q
        .cursor
        .map(|c| {
            c.parse::<WorkflowId>()
                .map_err(|_| ApiError::bad_request("invalid_cursor", "not a cursor from a page"))
        })
        .transpose()?;
    let workflows = state
        .store
        .workflow_list(WorkflowListParams {
            status,
            name: q.name,
            tenant: tenant.0,
            before,
            limit,
        })
        .await?;
    let next_cursor = (workflows.len() as i64 == limit)
        .then(|| workflows.last().map(|w| w.id))
        .flatten();
    Ok(Json(WorkflowPage {
        workflows,
        next_cursor,
    }))
}
