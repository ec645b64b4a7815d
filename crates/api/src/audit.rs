//! Who is asking, and the audit log every manage action writes to.
//!
//! The auth middleware puts a [`Caller`] on each request it lets through;
//! [`Actor`] reads it with the client's address, and [`Actor::record`]
//! stores what a handler did. An entry names a key by its name, never by
//! the key itself.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::Value;
use weir_core::AuditEntry;

use crate::AppState;

/// The key a request presented: its name and tenant. Absent when the API
/// has no keys: every caller is then `admin`.
#[derive(Clone, Debug)]
pub struct Caller {
    pub key_name: String,
    pub tenant: Option<String>,
}

/// The address a connection came from, put on each of its requests.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// Who made a request, as the audit log names them.
#[derive(Clone, Debug)]
pub struct Actor {
    pub name: String,
    pub tenant: Option<String>,
    pub client_ip: Option<String>,
}

/// What the audit log calls a caller when the API has no keys.
pub const ADMIN: &str = "admin";

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let caller = parts.extensions.get::<Caller>();
        // Behind a proxy (weir lb adds it) the first hop is the client.
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|ip| ip.trim().to_owned())
            .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok());
        let peer = parts
            .extensions
            .get::<PeerAddr>()
            .map(|p| p.0.ip().to_string());
        Ok(Actor {
            name: caller.map_or_else(|| ADMIN.to_owned(), |c| c.key_name.clone()),
            tenant: caller.and_then(|c| c.tenant.clone()),
            client_ip: forwarded.or(peer),
        })
    }
}

impl Actor {
    /// Stores one action. The action itself is done by now: a store that
    /// fails here is logged and counted, not turned into the answer's error.
    pub async fn record(
        &self,
        state: &AppState,
        action: &str,
        target: Option<String>,
        detail: Option<Value>,
        count: Option<i64>,
    ) {
        let entry = AuditEntry {
            id: 0,
            at: chrono::Utc::now(),
            actor: self.name.clone(),
            tenant: self.tenant.clone(),
            client_ip: self.client_ip.clone(),
            action: action.to_owned(),
            target,
            detail,
            count,
        };
        if let Err(e) = state.store.audit_record(&entry).await {
            metrics::counter!("weir_audit_write_failures_total").increment(1);
            tracing::warn!(error = %e, action, actor = %self.name, "audit entry not stored");
        }
    }
}
