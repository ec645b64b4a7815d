//! `GET /task-types`: the types this node accepts, without secrets.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use weir_core::TaskTypeView;

use crate::AppState;

#[derive(Serialize, ToSchema)]
pub struct TaskTypeList {
    pub task_types: Vec<TaskTypeView>,
}

#[utoipa::path(get, path = "/task-types", tag = "tasks",
    responses((status = 200, description = "Every registered type with its handler and defaults; no secrets, header values or env", body = TaskTypeList)))]
pub async fn list(State(state): State<AppState>) -> Json<TaskTypeList> {
    Json(TaskTypeList {
        task_types: state
            .config
            .task_types
            .iter()
            .map(|t| t.public_view())
            .collect(),
    })
}
