//! `GET /audit`: the audit log, newest first (manage scope).

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use weir_core::{AuditEntry, AuditListParams};

use crate::schema::ErrorBody;
use crate::{ApiError, AppState};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this action, e.g. `queue.pause`.
    action: Option<String>,
    /// 1 to 500 (default 100).
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<i64>,
}

/// `GET /audit`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<i64>,
}

/// `GET /audit?action=&limit=&cursor=`: who did what — bulk actions,
/// retries, cancels, queue pauses and limits — with the key's name (never
/// the key), its tenant and the client's address.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery),
    responses(
        (status = 200, description = "Newest first", body = AuditPage),
        (status = 400, description = "Bad query", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be from 1 to 500",
        ));
    }
    let entries = state
        .store
        .audit_list(&AuditListParams {
            before: q.cursor,
            action: q.action,
            limit,
        })
        .await?;
    let next_cursor = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditPage {
        entries,
        next_cursor,
    }))
}
