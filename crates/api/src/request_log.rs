//! Middleware: tags every answer with `X-Weir-Node` and logs the request.
//!
//! `GET /` logs its own row and waits for the commit (its answer says the row is
//! written); every other request is logged after the answer is sent, without
//! holding the client. Health checks are not logged: they would drown the log.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use weir_core::RequestLogEntry;

use crate::AppState;

/// Marks a response whose request the handler already logged.
#[derive(Clone, Copy, Debug)]
pub struct AlreadyLogged;

pub async fn log_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let mut response = next.run(req).await;
    if let Ok(node) = HeaderValue::from_str(&state.config.node_id) {
        response.headers_mut().insert("x-weir-node", node);
    }
    if response.extensions().get::<AlreadyLogged>().is_none() && path != "/health" {
        let entry = RequestLogEntry {
            node_id: state.config.node_id.clone(),
            method,
            path: truncate(path, 2048),
            status: response.status().as_u16(),
            message: None,
            created_at: Utc::now(),
        };
        let writer = state.request_log.clone();
        tokio::spawn(async move { writer.write_detached(entry).await });
    }
    response
}

/// Cuts `s` to at most `max` bytes on a char boundary (hostile paths can be long).
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}
