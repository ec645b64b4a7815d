//! The middleware in front of every route: the client's key and the scope
//! the endpoint needs ([`crate::api_keys`]).

use std::convert::Infallible;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api_keys::{is_add_steps, is_worker_token, presented, required_scope};
use crate::audit::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Refuses a request whose key is missing, unknown, or lacks the scope the
/// endpoint needs; passes every request when no keys are configured.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(keys) = &state.config.api_keys else {
        return next.run(req).await;
    };
    let Some(scope) = required_scope(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let worker_token = state.config.worker_token.as_deref();
    if is_add_steps(req.uri().path()) && is_worker_token(req.headers(), worker_token) {
        // An external worker's step adding steps: its task's tenant holds.
        return next.run(req).await;
    }
    let Some(given) = presented(&req) else {
        return ApiError::Unauthorized {
            code: "missing_api_key",
            message: "this endpoint needs an API key: Authorization: Bearer <key>".into(),
        }
        .into_response();
    };
    let Some(key) = keys.find(given) else {
        return ApiError::Unauthorized {
            code: "invalid_api_key",
            message: "the API key is not one this node knows".into(),
        }
        .into_response();
    };
    if !key.scopes.contains(&scope) {
        return ApiError::Forbidden {
            code: "missing_scope",
            message: format!(
                "key {:?} lacks the {:?} scope this endpoint needs",
                key.name,
                scope.as_str()
            ),
        }
        .into_response();
    }
    let caller = Caller {
        key_name: key.name.clone(),
        tenant: key.tenant.clone(),
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The tenant of the request's key: `Tenant(None)` when keys are off or the
/// key has none (it then sees every task).
#[derive(Clone, Debug, Default)]
pub struct Tenant(pub Option<String>);

impl Tenant {
    /// Whether this caller may see a task of `owner`.
    pub fn sees(&self, owner: Option<&str>) -> bool {
        match &self.0 {
            None => true,
            Some(mine) => owner == Some(mine.as_str()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        // The key's tenant, from the caller the middleware put there.
        Ok(Tenant(
            parts
                .extensions
                .get::<Caller>()
                .and_then(|c| c.tenant.clone()),
        ))
    }
}
