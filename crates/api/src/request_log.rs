//! Middleware: tags every answer with `X-Weir-Node`, logs the request and
//! records its duration (`http_server_request_duration_seconds`, by route).
//!
//! `GET /` logs its own row and waits for the commit (its answer says the row is
//! written); every other request is logged after the answer is sent, without
//! holding the client. Health checks are not logged: they would drown the log.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use metrics::histogram;
use tracing::Instrument;
use weir_core::RequestLogEntry;

use crate::AppState;

const REQUEST_ID: &str = "x-request-id";

/// A fresh request id: this process's random prefix and a counter — unique
/// without asking the kernel for randomness on every request.
fn next_request_id() -> HeaderValue {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| format!("{:016x}", rand::random::<u64>()));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("{prefix}-{n:x}")).expect("hex is a valid header value")
}

/// Marks a response whose request the handler already logged.
#[derive(Clone, Copy, Debug)]
pub struct AlreadyLogged;

pub async fn log_request(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    // The route's pattern, not the path: `/tasks/{id}`, one series per route.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    // The lb's request id (or a fresh one), on every log line of this request
    // and on the answer.
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .cloned()
        .unwrap_or_else(next_request_id);
    // Probes and scrapes are not the users' requests: no log row, no trace.
    let probe = path == "/health" || path.starts_with("/health/");
    let trace = match probe || path == "/metrics" {
        true => None,
        false => crate::trace::request_span(req.headers()),
    };
    let span = tracing::info_span!(
        "request",
        request_id = request_id.to_str().unwrap_or("-"),
        method = %method,
        path = prefix_of(&path, 256),
        trace_id = tracing::field::Empty,
    );
    if let Some(trace) = &trace {
        span.record("trace_id", trace.context().trace_id_hex());
        req.extensions_mut()
            .insert(crate::trace::RequestTrace(Some(trace.context().clone())));
    }
    let mut response = next.run(req).instrument(span.clone()).await;
    if let Some(trace) = trace {
        crate::trace::request_end(trace, &method, &route, response.status().as_u16());
    }
    response.headers_mut().insert(REQUEST_ID, request_id);
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            elapsed_us = elapsed.as_micros() as u64,
            "answered"
        )
    });
    histogram!(
        "http_server_request_duration_seconds",
        "route" => route,
        "method" => method_label(&method),
        "status" => response.status().as_str().to_owned(),
    )
    .record(elapsed.as_secs_f64());
    if let Ok(node) = HeaderValue::from_str(&state.config.node_id) {
        response.headers_mut().insert("x-weir-node", node);
    }
    if response.extensions().get::<AlreadyLogged>().is_none() && !probe {
        let entry = RequestLogEntry {
            node_id: state.config.node_id.clone(),
            method,
            path: truncate(path, 2048),
            status: response.status().as_u16(),
            message: None,
            created_at: Utc::now(),
        };
        // Queued without a task per request; only a full queue waits, and
        // then in a task of its own, never holding the answer.
        if let Err(entry) = state.request_log.try_write_detached(entry) {
            let writer = state.request_log.clone();
            tokio::spawn(async move { writer.write_detached(entry).await });
        }
    }
    response
}

/// A method as a metric label: any other than the standard ones is `other`,
/// so clients cannot make up series.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Cuts `s` to at most `max` bytes on a char boundary (hostile paths can be long).
pub fn truncate(mut s: String, max: usize) -> String {
    let end = prefix_of(&s, max).len();
    s.truncate(end);
    s
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary; borrowed, for when no owned copy is needed.
pub fn prefix_of(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
