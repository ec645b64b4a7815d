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
use crate::jwt::looks_like_jwt;
use crate::state::AppState;

/// Refuses a request whose key is missing, unknown, or lacks the scope the
/// endpoint needs; passes every request when no keys are configured.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let (keys, jwt) = (
        state.config.api_keys.as_deref(),
        state.config.jwt.as_deref(),
    );
    if keys.is_none() && jwt.is_none() {
        return next.run(req).await;
    }
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
            message: "this endpoint needs an API key or token: Authorization: Bearer <credential>"
                .into(),
        }
        .into_response();
    };
    let (name, scopes, tenant) = match jwt.filter(|_| looks_like_jwt(given)) {
        Some(jwt) => match jwt.verify(given) {
            Ok(v) => (v.name, v.scopes, v.tenant),
            Err(e) => {
                return ApiError::Unauthorized {
                    code: "invalid_token",
                    message: e.to_string(),
                }
                .into_response()
            }
        },
        None => match keys.and_then(|k| k.find(given)) {
            Some(key) => (key.name.clone(), key.scopes.clone(), key.tenant.clone()),
            None => {
                return ApiError::Unauthorized {
                    code: "invalid_api_key",
                    message: "the API key is not one this node knows".into(),
                }
                .into_response()
            }
        },
    };
    if !scopes.contains(&scope) {
        return ApiError::Forbidden {
            code: "missing_scope",
            message: format!(
                "{name:?} lacks the {:?} scope this endpoint needs",
                scope.as_str()
            ),
        }
        .into_response();
    }
    let caller = Caller {
        key_name: name,
        tenant,
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
