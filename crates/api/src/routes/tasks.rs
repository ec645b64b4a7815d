//! Tasks: `POST /tasks`, `POST /hash/{kind}`, `GET /tasks/{id}`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use weir_core::{
    Builtin, RetryPolicy, Store, StoreError, Task, TaskChange, TaskCursor, TaskFilter, TaskId,
    TaskListParams, TaskSort, TaskState, WorkflowId,
};

use weir_store::{Submission, Submitted};

use crate::auth::Tenant;
use crate::body::JsonBody;
use crate::schema::{
    CachedResult, ErrorBody, QueueStats, SubmitAnswer, TaskAccepted, TaskPage, TaskStats,
};
use crate::trace::RequestTrace;
use crate::{ApiError, AppState};

/// The general submission form.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitTask {
    /// A registered type (`GET /task-types`): `md5`, `sha256`, `argon2`,
    /// `sleep`, `flaky`, `noop`, or one of the config's `[task_types]`.
    #[serde(rename = "type")]
    #[schema(example = "md5")]
    kind: String,
    /// The type's input: `{"string": …}` for hashes, `{"ms": …}` for sleep,
    /// `{"fail_times": …}` for flaky.
    #[schema(value_type = Object, example = json!({"string": "hello"}))]
    input: Value,
    /// Attempts before the task is dead (1 to 100; default: the type's, else the node's).
    max_attempts: Option<i32>,
    /// Higher runs first (default: the type's, else 0).
    priority: Option<i32>,
    /// Not run before this moment.
    run_at: Option<DateTime<Utc>>,
    /// Same key within the idempotency window → the same task.
    idempotency_key: Option<String>,
    /// A named queue (default: the type's, else `default`).
    queue: Option<String>,
    /// At most the workers' key limit of tasks with this key run at once.
    concurrency_key: Option<String>,
    /// This task's backoff between attempts, `BASE:CAP` like `100ms:30s`.
    retry_backoff: Option<String>,
    /// A lower per-attempt time limit than the type's, like `30s`.
    timeout: Option<String>,
}

/// `retry_backoff` as sent: `BASE:CAP` like `100ms:30s` (its bounds are the
/// submission's rules, checked by the submitter).
pub(crate) fn parse_backoff(spec: Option<String>) -> Result<Option<RetryPolicy>, ApiError> {
    spec.map(|s| {
        weir_core::task_type::parse_backoff(&s)
            .map_err(|why| ApiError::bad_request("invalid_retry_backoff", why))
    })
    .transpose()
}

/// `timeout` as sent: a duration like `30s`.
pub(crate) fn parse_timeout(spec: Option<String>) -> Result<Option<std::time::Duration>, ApiError> {
    spec.map(|s| {
        humantime::parse_duration(s.trim())
            .map_err(|e| ApiError::bad_request("invalid_timeout", format!("{s:?}: {e}")))
    })
    .transpose()
}

/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// The key from the `Idempotency-Key` header or the body's field (they must agree).
pub(crate) fn idempotency_key(
    headers: &HeaderMap,
    field: Option<String>,
) -> Result<Option<String>, ApiError> {
    let header = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_idempotency_key",
                        "Idempotency-Key must be visible ASCII",
                    )
                })?
                .to_string(),
        ),
        None => None,
    };
    let key = match (header, field) {
        (Some(h), Some(f)) if h != f => {
            return Err(ApiError::bad_request(
                "invalid_idempotency_key",
                "the Idempotency-Key header and the idempotency_key field differ",
            ))
        }
        (h, f) => h.or(f),
    };
    match key {
        Some(k) if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_BYTES => {
            Err(ApiError::bad_request(
                "invalid_idempotency_key",
                format!("an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes"),
            ))
        }
        k => Ok(k),
    }
}

/// `POST /tasks {"type","input",...}`.
#[utoipa::path(post, path = "/tasks", tag = "tasks", request_body = SubmitTask,
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key within 24 h returns the same task")),
    responses(
        (status = 202, description = "Queued (durable); Location names the task", body = TaskAccepted),
        (status = 200, description = "An earlier submission stands for this one (idempotency key, or the same cacheable input queued or running), or the result came from the cache", body = SubmitAnswer),
        (status = 400, description = "Malformed submission", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key came with another request before", body = ErrorBody),
        (status = 503, description = "Database busy; retry after Retry-After", body = ErrorBody),
        (status = 507, description = "The database's disk is full; nothing stored; retry after Retry-After", body = ErrorBody)))]
pub async fn submit(
    State(state): State<AppState>,
    tenant: Tenant,
    trace: RequestTrace,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SubmitTask>,
) -> Result<Response, ApiError> {
    let registered = state.config.task_types.get(&body.kind)?;
    let idempotency_key = idempotency_key(&headers, body.idempotency_key)?;
    let submission = Submission {
        kind: registered.spec.name.to_string(),
        input: body.input,
        max_attempts: body.max_attempts,
        priority: body.priority,
        run_at: body.run_at,
        idempotency_key,
        queue: body.queue,
        concurrency_key: body.concurrency_key,
        backoff: parse_backoff(body.retry_backoff)?,
        timeout: parse_timeout(body.timeout)?,
        tenant: tenant.0,
        trace: None,
    };
    enqueue(&state, submission, &trace).await
}

/// `POST /hash/{kind}` with `{"string": …}` (argon2 also takes its cost fields).
#[utoipa::path(post, path = "/hash/{kind}", tag = "tasks",
    params(("kind" = String, Path, description = "md5, sha256 or argon2"),
        ("Idempotency-Key" = Option<String>, Header, description = "The same key within 24 h returns the same task")),
    request_body(content = Object, description = "`{\"string\": …}`; argon2 also takes `m_cost`, `t_cost`, `p_cost`"),
    responses(
        (status = 202, description = "Queued (durable)", body = TaskAccepted),
        (status = 200, description = "From the cache, or folded into an equal live task", body = SubmitAnswer),
        (status = 400, description = "Unknown hash or malformed input", body = ErrorBody)))]
pub async fn submit_hash(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    tenant: Tenant,
    trace: RequestTrace,
    headers: HeaderMap,
    JsonBody(input): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let registered = state.config.task_types.get(&kind)?;
    let is_hash = matches!(
        Builtin::from_name(&kind),
        Some(Builtin::Md5 | Builtin::Sha256 | Builtin::Argon2)
    );
    if !is_hash {
        return Err(ApiError::bad_request(
            "unknown_task_type",
            format!("{kind} is not a hash; submit it with POST /tasks"),
        ));
    }
    let idempotency_key = idempotency_key(&headers, None)?;
    let submission = Submission {
        kind: registered.spec.name.to_string(),
        input,
        max_attempts: None,
        priority: None,
        run_at: None,
        idempotency_key,
        queue: None,
        concurrency_key: None,
        backoff: None,
        timeout: None,
        tenant: tenant.0,
        trace: None,
    };
    enqueue(&state, submission, &trace).await
}

/// Submits through the node's [`Submitter`](weir_store::Submitter) and
/// answers as the outcome says.
async fn enqueue(
    state: &AppState,
    mut s: Submission,
    trace: &RequestTrace,
) -> Result<Response, ApiError> {
    let location = |id: TaskId| [(header::LOCATION, format!("/tasks/{id}"))];
    let mut span = trace.enqueue(&s.kind);
    s.trace = span.as_ref().map(|span| span.context().to_stored());
    let submitted = state.submitter.submit(s).await;
    if let Some(mut span) = span.take() {
        if let Err(e) = &submitted {
            span.set_error(e.to_string());
        }
        span.end();
    }
    Ok(match submitted? {
        Submitted::Cached { kind, result } => {
            let body = CachedResult {
                kind,
                result,
                source: "cache",
            };
            (StatusCode::OK, Json(body)).into_response()
        }
        Submitted::Queued { task_id, kind } => {
            let body = TaskAccepted {
                task_id,
                status: TaskState::Queued,
                kind,
                deduplicated: None,
            };
            (StatusCode::ACCEPTED, location(task_id), Json(body)).into_response()
        }
        Submitted::Existing {
            task_id,
            kind,
            state: status,
            replayed,
        } => {
            let body = TaskAccepted {
                task_id,
                status,
                kind,
                deduplicated: (!replayed).then_some(true),
            };
            let mut resp = (StatusCode::OK, location(task_id), Json(body)).into_response();
            if replayed {
                resp.headers_mut().insert(
                    "idempotent-replayed",
                    header::HeaderValue::from_static("true"),
                );
            }
            resp
        }
    })
}

fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "task_not_found",
        message: "no task with that id".into(),
    }
}

/// `GET /tasks/{id}`.
#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task, with progress, result or errors", body = Task),
        (status = 404, description = "No such task", body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<Task>, ApiError> {
    let id: TaskId = id.parse().map_err(|_| not_found())?;
    state
        .store
        .task_get(id)
        .await?
        .filter(|t| tenant.sees(t.tenant.as_deref()))
        .map(Json)
        .ok_or_else(not_found)
}

/// The task id a caller may change: another tenant's task is not found.
async fn own_task(state: &AppState, tenant: &Tenant, id: &str) -> Result<TaskId, ApiError> {
    let id: TaskId = id.parse().map_err(|_| not_found())?;
    if tenant.0.is_some() {
        let task = state.store.task_get(id).await?;
        if !task.is_some_and(|t| tenant.sees(t.tenant.as_deref())) {
            return Err(not_found());
        }
    }
    Ok(id)
}

/// `POST /tasks/{id}/retry`: a dead task queued again with fresh attempts.
#[utoipa::path(post, path = "/tasks/{id}/retry", tag = "tasks",
    params(("id" = String, Path, description = "The task's id")),
    responses(
        (status = 200, description = "Queued again", body = Task),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task is not dead", body = ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    tenant: Tenant,
    actor: crate::audit::Actor,
    Path(id): Path<String>,
) -> Result<Json<Task>, ApiError> {
    let id = own_task(&state, &tenant, &id).await?;
    match state.store.task_retry(id, Utc::now()).await? {
        TaskChange::Changed(task) => {
            actor
                .record(&state, "task.retry", Some(id.to_string()), None, Some(1))
                .await;
            Ok(Json(*task))
        }
        TaskChange::NotFound => Err(not_found()),
        TaskChange::WrongState(s) => Err(ApiError::Conflict {
            code: "task_not_dead",
            message: format!("only dead tasks can be retried; this one is {}", s.as_str()),
        }),
    }
}

/// `DELETE /tasks/{id}`: cancels a queued task; a running one is fenced off
/// (its result will be refused) and shown as cancelled at once.
#[utoipa::path(delete, path = "/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "The task's id")),
    responses(
        (status = 200, description = "Cancelled", body = Task),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "Already finished", body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    tenant: Tenant,
    actor: crate::audit::Actor,
    Path(id): Path<String>,
) -> Result<Json<Task>, ApiError> {
    let id = own_task(&state, &tenant, &id).await?;
    match state.store.task_cancel(id, Utc::now()).await? {
        TaskChange::Changed(task) => {
            actor
                .record(&state, "task.cancel", Some(id.to_string()), None, Some(1))
                .await;
            Ok(Json(*task))
        }
        TaskChange::NotFound => Err(not_found()),
        TaskChange::WrongState(s) => Err(ApiError::Conflict {
            code: "task_finished",
            message: format!("the task is already {}", s.as_str()),
        }),
    }
}

/// Most tasks one `GET /tasks` page holds.
const MAX_PAGE: i64 = 500;
/// A page ends once its tasks reach this many bytes of JSON (as a
/// DynamoDB query page ends at 1 MB): the answer a request makes the node
/// hold, and a client that never reads it leaves held, stays bounded
/// whatever the tasks' inputs and results hold.
const MAX_PAGE_BYTES: u64 = 1024 * 1024;

/// Keeps the newest tasks whose JSON fits [`MAX_PAGE_BYTES`] (always at
/// least one); whether any were cut.
fn cut_to_page_bytes(tasks: &mut Vec<Task>) -> bool {
    let mut bytes = 0;
    let fits = tasks
        .iter()
        .take_while(|task| {
            let first = bytes == 0;
            bytes += json_len(task);
            first || bytes <= MAX_PAGE_BYTES
        })
        .count();
    let cut = fits < tasks.len();
    tasks.truncate(fits);
    cut
}

fn json_len(task: &Task) -> u64 {
    let mut counter = ByteCounter(0);
    let _ = serde_json::to_writer(&mut counter, task);
    counter.0
}

/// An `io::Write` that only counts.
struct ByteCounter(u64);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// waiting, queued, running, succeeded, dead or cancelled.
    #[serde(alias = "status")]
    state: Option<String>,
    /// A task type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    queue: Option<String>,
    tenant: Option<String>,
    /// Only this workflow's steps.
    workflow: Option<String>,
    /// Created at or after (RFC 3339).
    created_after: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    created_before: Option<DateTime<Utc>>,
    /// Finished at or after (RFC 3339).
    finished_after: Option<DateTime<Utc>>,
    /// Finished before (RFC 3339).
    finished_before: Option<DateTime<Utc>>,
    /// Text in the last error, any case.
    error: Option<String>,
    /// `created` (default: newest first) or `finished` (finished tasks,
    /// most recently finished first).
    sort: Option<TaskSort>,
    /// 1 to 500 (default 50).
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn invalid_query(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

impl ListQuery {
    /// The filter it asks for; the error names the parameter.
    fn filter(&mut self, state: &AppState) -> Result<TaskFilter, ApiError> {
        let kind = self
            .kind
            .take()
            .map(|k| {
                state
                    .config
                    .task_types
                    .get(&k)
                    .map(|t| t.spec.name.to_string())
            })
            .transpose()?;
        let workflow = self
            .workflow
            .take()
            .map(|w| w.parse::<WorkflowId>())
            .transpose()
            .map_err(|_| invalid_query("workflow is not a workflow id"))?;
        let filter = TaskFilter {
            state: self
                .state
                .take()
                .map(|s| s.parse::<TaskState>())
                .transpose()
                .map_err(invalid_query)?,
            kind,
            queue: self.queue.take(),
            tenant: self.tenant.take(),
            workflow,
            created_after: self.created_after,
            created_before: self.created_before,
            finished_after: self.finished_after,
            finished_before: self.finished_before,
            error: self.error.take(),
        };
        filter.check().map_err(invalid_query)?;
        Ok(filter)
    }
}

/// `GET /tasks?state=&type=&queue=&tenant=&workflow=&created_after=&…&error=&sort=`:
/// a page of the tasks matching every filter given, newest first (or most
/// recently finished first with `sort=finished`); `next_cursor` fetches
/// the next page (absent on the last one).
#[utoipa::path(get, path = "/tasks", tag = "tasks", params(ListQuery),
    responses(
        (status = 200, description = "Newest first", body = TaskPage),
        (status = 400, description = "Bad filter, limit or cursor", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TaskPage>, ApiError> {
    let axum::extract::Query(mut q) = query.map_err(|e| invalid_query(e.body_text()))?;
    let filter = q.filter(&state)?;
    let sort = q.sort.unwrap_or_default();
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(invalid_query(format!("limit must be from 1 to {MAX_PAGE}")));
    }
    let after = q
        .cursor
        .map(|c| TaskCursor::decode(&c, sort))
        .map(|c| c.ok_or_else(|| invalid_query("cursor is not one this API gave out")))
        .transpose()?;
    // Another tenant's tasks: none to show.
    let Some(filter) = filter.within_tenant(tenant.0.as_deref()) else {
        return Ok(Json(TaskPage {
            tasks: Vec::new(),
            next_cursor: None,
        }));
    };
    let mut tasks = state
        .store
        .task_list(TaskListParams {
            filter,
            sort,
            after,
            limit,
        })
        .await?;
    let cut = cut_to_page_bytes(&mut tasks);
    let next_cursor = (cut || tasks.len() as i64 == limit)
        .then(|| tasks.last())
        .flatten()
        .map(|t| {
            TaskCursor {
                id: t.id,
                finished_at: (sort == TaskSort::Finished)
                    .then_some(t.completed_at)
                    .flatten(),
            }
            .encode()
        });
    Ok(Json(TaskPage { tasks, next_cursor }))
}

/// `GET /tasks/stats`: how many tasks are in each state, and per named
/// queue how many are queued and running, with the queue's limits.
#[utoipa::path(get, path = "/tasks/stats", tag = "tasks",
    responses((status = 200, description = "Counts by state and by queue", body = TaskStats)))]
pub async fn stats(State(state): State<AppState>) -> Result<Json<TaskStats>, ApiError> {
    Ok(Json(task_stats(state.store.as_ref(), Utc::now()).await?))
}

/// Every queue with live tasks, limits or a pause: its depth, how long its
/// oldest queued task has waited, its limits and whether it is paused.
pub async fn queue_stats(
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<Vec<QueueStats>, StoreError> {
    let depths = store.queue_depths().await?;
    let limits = store.queue_list().await?;
    let done = store
        .queue_succeeded_since(now - chrono::Duration::seconds(60))
        .await?;
    let mut queues: Vec<QueueStats> = depths
        .iter()
        .map(|d| {
            let l = limits.iter().find(|l| l.name == d.queue);
            QueueStats {
                name: d.queue.clone(),
                queued: d.queued,
                running: d.running,
                oldest_queued_at: d.oldest_queued_at,
                paused: l.is_some_and(|l| l.paused),
                concurrency: l.and_then(|l| l.concurrency),
                rate_per_second: l.and_then(|l| l.rate_per_second),
                burst: l.and_then(|l| l.burst),
                succeeded_last_minute: 0,
            }
        })
        .collect();
    // Limited and paused queues show even when empty.
    for l in limits
        .iter()
        .filter(|l| !depths.iter().any(|d| d.queue == l.name))
    {
        queues.push(QueueStats {
            paused: l.paused,
            concurrency: l.concurrency,
            rate_per_second: l.rate_per_second,
            burst: l.burst,
            ..QueueStats::empty(&l.name)
        });
    }
    for q in &mut queues {
        q.succeeded_last_minute = done
            .iter()
            .find(|(name, _)| *name == q.name)
            .map_or(0, |(_, n)| *n);
    }
    Ok(queues)
}

/// Counts by state and by queue, and the last minute's throughput; shared
/// with `weir status --database-url`, which reads the store itself.
pub async fn task_stats(store: &dyn Store, now: DateTime<Utc>) -> Result<TaskStats, StoreError> {
    let c = store.task_counts().await?;
    let queues = queue_stats(store, now).await?;
    Ok(TaskStats {
        queued: c.queued,
        running: c.running,
        succeeded: c.succeeded,
        dead: c.dead,
        cancelled: c.cancelled,
        waiting: c.waiting,
        workflows: store
            .workflow_counts()
            .await?
            .into_iter()
            .map(|(status, n)| (status.as_str().to_string(), n))
            .collect(),
        queues,
        finished_last_minute: store
            .task_finished_counts(now - chrono::Duration::seconds(60))
            .await?,
        queued_by_type: store.task_queued_by_type().await?.into_iter().collect(),
    })
}
