//! The attempt loop both forwarding paths share: pick a backend (or wait for
//! a slot), send through the path's [`Transport`], and on failure decide —
//! once, for both paths — whether another backend may be tried (the request
//! never reached the first, it may be sent again, the retry budget allows
//! it), what the failure costs the backend's health, and which JSON error the
//! client gets when no backend answers.
//!
//! The phases, as pingora names them: `upstream_peer` is
//! [`dispatch::pick_or_queue`]; `connect`/`send` is [`Transport::send`];
//! `fail_to_connect` and `error_while_proxy` are [`charge`]; the answer's
//! bookkeeping is [`dispatch::note_answer`]. Relaying the answer and the
//! access log stay with each path.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::backends::dispatch::{self, Answer, Overloaded};
use crate::backends::{clock_ns_at, InFlightGuard};
use crate::request::rules::{json_error, MAX_CONNECT_ATTEMPTS};
use crate::state::Lb;
use crate::{backends::outlier, Backend};

/// How one attempt on a backend ended without an answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Nothing reached the backend: another one may be tried.
    Connect(String),
    /// The request may have reached the backend.
    Upstream(String),
    /// No answer within `--upstream-timeout`.
    Timeout,
    /// The client's request body broke off or was malformed: the client's
    /// fault, charged to no backend.
    Client(String),
}

/// Why the lb answers a request itself.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Overloaded,
    NoBackend,
    Unreachable(&'static str),
    UpstreamError,
    Timeout,
    /// The request body could not be read (see [`Failure::Client`]).
    BadBody,
}

impl Refusal {
    /// The answer's status, error code and message.
    pub(crate) fn describe(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Refusal::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "every API node is at capacity; retry shortly",
            ),
            Refusal::NoBackend => (
                StatusCode::BAD_GATEWAY,
                "no_backend",
                "no API node is configured",
            ),
            Refusal::Unreachable(message) => {
                (StatusCode::BAD_GATEWAY, "backend_unreachable", message)
            }
            Refusal::UpstreamError => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "the API node failed to answer",
            ),
            Refusal::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "the API node did not answer in time",
            ),
            Refusal::BadBody => (
                StatusCode::BAD_REQUEST,
                "malformed_body",
                "the request body could not be read: it broke off or its framing is malformed",
            ),
        }
    }

    /// `Retry-After` for a refusal the client should retry shortly.
    pub(crate) fn retry_after(&self) -> Option<HeaderValue> {
        matches!(self, Refusal::Overloaded).then(|| HeaderValue::from_static("1"))
    }

    /// The refusal as a JSON error response (the general path).
    pub(crate) fn into_response(self) -> Response<Body> {
        let (status, code, message) = self.describe();
        let mut resp = json_error(status, code, message);
        if let Some(v) = self.retry_after() {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// One way of carrying a request to a backend: the fast path's byte relay or
/// hyper's client.
pub(crate) trait Transport {
    /// A backend's answer, its body not yet relayed.
    type Answer;

    /// Sends the request to `backend`; `last` when no attempt follows, so
    /// the request need not be kept for another.
    async fn send(&mut self, backend: &Backend, last: bool) -> Result<Self::Answer, Failure>;

    /// What the health and load bookkeeping reads of an answer.
    fn read<'a>(&'a self, answer: &'a Self::Answer) -> Answer<'a>;
}

/// The backend that answered, its in-flight slot (held until the answer has
/// been relayed) and the answer.
pub(crate) struct Answered<'b, A> {
    pub backend: &'b Arc<Backend>,
    pub guard: InFlightGuard,
    pub answer: A,
}

/// What the loop needs to know of the request.
pub(crate) struct Plan {
    /// The affinity key (`consistent_hash`), else 0.
    pub key: u64,
    /// Whether the request may be sent to another backend after the first
    /// could not be reached.
    pub replayable: bool,
    /// When the request arrived (retry budget clock).
    pub started: Instant,
}

/// Tries backends for one request until one answers or the request must be
/// refused.
pub(crate) async fn run<'b, T: Transport>(
    lb: &Lb,
    backends: &'b [Arc<Backend>],
    plan: Plan,
    transport: &mut T,
) -> Result<Answered<'b, T::Answer>, Refusal> {
    let attempts = if plan.replayable {
        MAX_CONNECT_ATTEMPTS.min(backends.len().max(1))
    } else {
        1
    };
    lb.retry_budget.record_request_at(clock_ns_at(plan.started));
    let Some(first) = backends.first() else {
        lb.rejected_no_backend.fetch_add(1, Ordering::Relaxed);
        return Err(Refusal::NoBackend);
    };
    // The backends tried so far: `tried[..attempted]` (no allocation per request).
    let mut tried: [&Arc<Backend>; MAX_CONNECT_ATTEMPTS] = [first; MAX_CONNECT_ATTEMPTS];
    let mut attempted = 0;
    let mut last_error = "no API node could be reached";
    for attempt in 1..=attempts {
        if attempt > 1 && !lb.retry_budget.try_retry() {
            last_error = "the chosen API node could not be reached (retry budget spent)";
            break;
        }
        let (backend, guard) =
            match dispatch::pick_or_queue(lb, backends, &tried[..attempted], plan.key).await {
                Ok(Some(reserved)) => reserved,
                Ok(None) => break,
                Err(Overloaded) => return Err(Refusal::Overloaded),
            };
        tried[attempted] = backend;
        attempted += 1;
        let sent_at = Instant::now();
        match transport.send(backend, attempt == attempts).await {
            Ok(answer) => {
                let answered = Instant::now();
                let (took, now) = (answered - sent_at, clock_ns_at(answered));
                backend.record_latency_at(took, now);
                // Only where the limit is used: three shared atomics per
                // answer. Not an answer read while the lb itself ran late:
                // that wait was the lb's, not the backend's.
                if dispatch::learns_limits(lb) {
                    if lb.lag.is_own_wait(took, now) {
                        lb.late_answers.fetch_add(1, Ordering::Relaxed);
                    } else {
                        backend.adaptive.record(took, backend.in_flight(), now);
                    }
                }
                dispatch::note_answer(lb, backends, backend, transport.read(&answer));
                return Ok(Answered {
                    backend,
                    guard,
                    answer,
                });
            }
            Err(failure) => {
                if let Some(refusal) = charge(lb, backends, backend, failure, plan.replayable) {
                    return Err(refusal);
                }
            }
        }
    }
    Err(if attempted == 0 {
        lb.rejected_no_backend.fetch_add(1, Ordering::Relaxed);
        Refusal::NoBackend
    } else {
        Refusal::Unreachable(last_error)
    })
}

/// What a failed attempt costs its backend, and the refusal it ends in
/// (`None`: another backend may be tried).
fn charge(
    lb: &Lb,
    backends: &[Arc<Backend>],
    backend: &Backend,
    failure: Failure,
    replayable: bool,
) -> Option<Refusal> {
    match failure {
        Failure::Connect(e) => {
            backend.record_error();
            outlier::record_failure(&lb.config.ejection, backends, backend, true);
            tracing::warn!(backend = %backend.authority, error = %e, "connect failed");
            (!replayable).then_some(Refusal::Unreachable(
                "the chosen API node could not be reached",
            ))
        }
        Failure::Upstream(e) => {
            backend.record_error();
            tracing::warn!(backend = %backend.authority, error = %e, "upstream failed");
            Some(Refusal::UpstreamError)
        }
        Failure::Timeout => {
            backend.record_error();
            Some(Refusal::Timeout)
        }
        Failure::Client(e) => {
            tracing::debug!(backend = %backend.authority, error = %e, "request body failed");
            Some(Refusal::BadBody)
        }
    }
}
