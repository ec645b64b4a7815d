//! The trace of a request an API node answers: its span continues the
//! caller's `traceparent` (the lb's span, or the client's), and a task it
//! queues carries the enqueue span's context to the workers.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use weir_trace::{KeyValue, Span, SpanKind, TraceContext};

/// The context of the request being answered: the node's span, or the
/// caller's passed on when the node exports no spans.
#[derive(Clone, Debug, Default)]
pub struct RequestTrace(pub Option<TraceContext>);

impl RequestTrace {
    /// The span of queueing a task (or a workflow) for this request; its
    /// context is what the task stores.
    pub fn enqueue(&self, task_type: &str) -> Option<Span> {
        let mut span =
            weir_trace::tracer().start("task.enqueue", SpanKind::Producer, self.0.as_ref())?;
        span.set_attribute(|| KeyValue::new("weir.task.type", task_type.to_owned()));
        Some(span)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestTrace {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(parts
            .extensions
            .get::<RequestTrace>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The node's span of a request with these headers.
pub(crate) fn request_span(headers: &HeaderMap) -> Option<Span> {
    let parent = TraceContext::from_headers(headers);
    weir_trace::tracer().start("api.request", SpanKind::Server, parent.as_ref())
}

/// Ends a request's span with its route and status.
pub(crate) fn request_end(span: Span, method: &str, route: &str, status: u16) {
    span.end_answered(
        method,
        KeyValue::new("http.route", route.to_owned()),
        status,
    );
}
