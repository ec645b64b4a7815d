//! Bulk actions: `POST /tasks/bulk` starts one (over ids, or over every task
//! a filter matches), answered at once with `202`; the node's bulk runner
//! does it in batches; `GET /tasks/bulk/{id}` shows how far it has come.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use weir_core::{BulkAction, BulkId, BulkJob, NewBulk, TaskFilter, TaskId};

use crate::audit::Actor;
use crate::auth::Tenant;
use crate::body::JsonBody;
use crate::schema::ErrorBody;
use crate::{ApiError, AppState};

/// Most ids one bulk action may name (a filter has no such bound). Each
/// batch reads the action's row, ids and all: a bound keeps that small.
pub const MAX_BULK_IDS: usize = 10_000;

/// `POST /tasks/bulk`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// `retry` (dead tasks), `cancel` (waiting, queued, running) or
    /// `delete` (finished tasks).
    action: BulkAction,
    /// These tasks; or give `filter`.
    ids: Option<Vec<String>>,
    /// Every task it matches, created before the request (`{}`: every task).
    filter: Option<TaskFilter>,
}

/// A bulk action and how far it has come.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BulkView {
    pub bulk_id: BulkId,
    #[serde(flatten)]
    pub job: BulkJob,
}

impl From<BulkJob> for BulkView {
    fn from(job: BulkJob) -> Self {
        BulkView {
            bulk_id: job.id,
            job,
        }
    }
}

/// `GET /tasks/bulk`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BulkList {
    pub bulk_actions: Vec<BulkView>,
}

fn parse_ids(ids: Vec<String>) -> Result<Vec<TaskId>, ApiError> {
    if ids.is_empty() || ids.len() > MAX_BULK_IDS {
        return Err(ApiError::bad_request(
            "invalid_bulk",
            format!("ids must name 1 to {MAX_BULK_IDS} tasks"),
        ));
    }
    ids.iter()
        .map(|id| {
            id.parse().map_err(|_| {
                ApiError::bad_request("invalid_bulk", format!("ids: {id:?} is not a task id"))
            })
        })
        .collect()
}

/// The filter a caller may act through: within its key's tenant.
pub(crate) fn tenant_filter(filter: TaskFilter, tenant: &Tenant) -> Result<TaskFilter, ApiError> {
    filter
        .check()
        .map_err(|e| ApiError::bad_request("invalid_filter", e))?;
    filter
        .within_tenant(tenant.0.as_deref())
        .ok_or_else(|| ApiError::Forbidden {
            code: "other_tenant",
            message: "filter.tenant names a tenant other than the key's".into(),
        })
}

/// `POST /tasks/bulk`: retries, cancels or deletes many tasks, in batches
/// on the server (each one bounded transaction; claims never wait on a
/// whole action); survives a restart and resumes; changes no task twice.
#[utoipa::path(post, path = "/tasks/bulk", tag = "tasks", request_body = BulkRequest,
    responses(
        (status = 202, description = "Started; poll GET /tasks/bulk/{id}", body = BulkView),
        (status = 400, description = "Bad action, ids or filter", body = ErrorBody),
        (status = 403, description = "Another tenant's filter", body = ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    tenant: Tenant,
    actor: Actor,
    JsonBody(body): JsonBody<BulkRequest>,
) -> Result<(StatusCode, Json<BulkView>), ApiError> {
    let (ids, filter) = match (body.ids, body.filter) {
        (Some(ids), None) => (Some(parse_ids(ids)?), TaskFilter::default()),
        (None, Some(filter)) => (None, filter),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_bulk",
                "give either ids or filter (filter {} covers every task)",
            ))
        }
    };
    let filter = tenant_filter(filter, &tenant)?;
    let detail = serde_json::json!({
        "filter": &filter,
        "ids": ids.as_ref().map(Vec::len),
    });
    let bulk = NewBulk {
        id: BulkId::new(),
        action: body.action,
        ids,
        filter,
        actor: actor.name.clone(),
        created_at: chrono::Utc::now(),
    };
    let job = state.store.bulk_start(bulk).await?;
    state.bulk_started.notify_one();
    actor
        .record(
            &state,
            &format!("tasks.bulk_{}", job.action.as_str()),
            Some(job.id.to_string()),
            Some(detail),
            job.ids,
        )
        .await;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "bulk_not_found",
        message: "no bulk action with that id".into(),
    }
}

/// `GET /tasks/bulk/{id}`: the action's status (`running`, `done`) and
/// counts: tasks looked at, changed, and left as they were.
#[utoipa::path(get, path = "/tasks/bulk/{id}", tag = "tasks",
    params(("id" = String, Path, description = "The bulk action's id")),
    responses(
        (status = 200, description = "The action", body = BulkView),
        (status = 404, description = "No such bulk action", body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<BulkView>, ApiError> {
    let id: BulkId = id.parse().map_err(|_| not_found())?;
    let job = state.store.bulk_get(id).await?.ok_or_else(not_found)?;
    // A tenant key sees the actions over its own tenant only.
    if tenant.0.is_some() && job.filter.tenant != tenant.0 {
        return Err(not_found());
    }
    Ok(Json(job.into()))
}

/// `GET /tasks/bulk`: the newest 50 bulk actions.
#[utoipa::path(get, path = "/tasks/bulk", tag = "tasks",
    responses((status = 200, description = "Newest first", body = BulkList)))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<BulkList>, ApiError> {
    let jobs = state.store.bulk_list(50).await?;
    let bulk_actions = jobs
        .into_iter()
        .filter(|job| tenant.0.is_none() || job.filter.tenant == tenant.0)
        .map(BulkView::from)
        .collect();
    Ok(Json(BulkList { bulk_actions }))
}
