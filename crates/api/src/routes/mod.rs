//! Handlers, one file per resource.

pub mod audit;
pub mod bulk;
pub mod cache;
pub mod events;
pub mod external;
pub mod health;
pub mod metrics;
pub mod queues;
pub mod root;
pub mod task_types;
pub mod tasks;
pub mod workers;
pub mod workflows;

use axum::http::Uri;

use crate::ApiError;

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound {
        code: "not_found",
        message: format!(
            "no route for {}",
            crate::request_log::truncate(uri.path().to_owned(), 256)
        ),
    }
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
