//! The lb's audit log: every change made through its admin API (strategy,
//! backends, rate limits), who made it (the admin token's holder, from which
//! address) and what it became — kept in memory, the newest
//! [`KEEP`], at `GET /lb/audit`, and logged (`weir::audit`) for log shippers.
//! The lb has no store; the API's audit log (`GET /audit`) holds the rest.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;

use axum::http::Method;
use axum::response::Response;
use serde_json::{json, Value};

/// Entries kept.
pub const KEEP: usize = 1000;
/// Largest answer kept as an entry's detail.
const MAX_DETAIL_BYTES: usize = 16 * 1024;

#[derive(Default)]
pub struct AuditRing {
    entries: Mutex<VecDeque<Value>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// What a change is called: `lb.strategy`, `lb.backend_drain`, ….
fn action_name(method: &Method, path: &str) -> String {
    let name = match (method.as_str(), path) {
        ("PUT", "/lb/strategy") => "strategy",
        ("POST", "/lb/backends") => "backend_add",
        ("DELETE", p) if p.starts_with("/lb/backends/") => "backend_remove",
        ("POST", p) if p.starts_with("/lb/backends/") && p.ends_with("/drain") => "backend_drain",
        ("PUT", "/lb/rate-limits") => "rate_limits",
        _ => return format!("lb.{} {path}", method.as_str().to_lowercase()),
    };
    format!("lb.{name}")
}

impl AuditRing {
    /// Records a change the admin API made, with its answer as the detail
    /// (what it is now); gives the answer back whole.
    pub async fn record(
        &self,
        client: Option<IpAddr>,
        method: &Method,
        path: &str,
        answer: Response,
    ) -> Response {
        let (parts, body) = answer.into_parts();
        // The admin API's own answers: small, and whole in memory already.
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let detail: Value = if bytes.len() <= MAX_DETAIL_BYTES {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        let action = action_name(method, path);
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let client_ip = client.map(|ip| ip.to_canonical().to_string());
        tracing::info!(target: "weir::audit", %action, path, client_ip = client_ip.as_deref().unwrap_or("-"), "admin change");
        let entry = json!({
            "id": id,
            "at": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "actor": "admin",
            "client_ip": client_ip,
            "action": action,
            "target": path,
            "detail": detail,
        });
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() == KEEP {
                entries.pop_front();
            }
            entries.push_back(entry);
        }
        Response::from_parts(parts, axum::body::Body::from(bytes))
    }

    /// Every entry kept, newest first.
    pub fn newest_first(&self) -> Vec<Value> {
        self.entries
            .lock()
            .map(|e| e.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;
    use axum::Json;

    use super::*;

    #[test]
    fn changes_are_named_by_what_they_do() {
        assert_eq!(action_name(&Method::PUT, "/lb/strategy"), "lb.strategy");
        assert_eq!(action_name(&Method::POST, "/lb/backends"), "lb.backend_add");
        assert_eq!(
            action_name(&Method::DELETE, "/lb/backends/b1"),
            "lb.backend_remove"
        );
        assert_eq!(
            action_name(&Method::POST, "/lb/backends/b1/drain"),
            "lb.backend_drain"
        );
        assert_eq!(
            action_name(&Method::PUT, "/lb/rate-limits"),
            "lb.rate_limits"
        );
        assert_eq!(action_name(&Method::POST, "/lb/other"), "lb.post /lb/other");
    }

    #[tokio::test]
    async fn the_ring_keeps_the_newest_and_gives_the_answer_back() {
        let ring = AuditRing::default();
        for i in 0..KEEP + 5 {
            let answer = Json(json!({"n": i})).into_response();
            let back = ring
                .record(
                    Some("::ffff:10.0.0.9".parse().unwrap()),
                    &Method::PUT,
                    "/lb/strategy",
                    answer,
                )
                .await;
            let body = axum::body::to_bytes(back.into_body(), 1024).await.unwrap();
            assert_eq!(
                serde_json::from_slice::<Value>(&body).unwrap(),
                json!({"n": i})
            );
        }
        let entries = ring.newest_first();
        assert_eq!(entries.len(), KEEP);
        assert_eq!(entries[0]["detail"], json!({"n": KEEP + 4}));
        assert_eq!(entries[0]["client_ip"], "10.0.0.9");
        assert_eq!(entries[0]["action"], "lb.strategy");
    }
}
