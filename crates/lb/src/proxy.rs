//! Forwarding one request to a backend and its answer back, unbuffered.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};

use crate::backend::InFlightGuard;
use crate::config::HashKey;
use crate::outlier;
use crate::selection::{hash_key as hash_key_bytes, Pick};
use crate::server::Lb;
use crate::upstream::{self, UpstreamError};
use crate::Backend;

/// How many backends one request may try when connecting fails.
pub(crate) const MAX_CONNECT_ATTEMPTS: usize = 3;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
pub(crate) const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Forwards `req` to a backend chosen by the active strategy and returns its
/// answer, or a JSON 502/503/504 when none answers. Every request carries an
/// `X-Request-Id` (the client's, or a fresh one) to the backend and back.
pub async fn forward(lb: &Lb, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let request_id = match req.headers().get(REQUEST_ID) {
        Some(v) if !v.is_empty() && v.len() <= 128 => v.clone(),
        _ => {
            let fresh = next_request_id();
            req.headers_mut().insert(REQUEST_ID, fresh.clone());
            fresh
        }
    };
    let access = lb.config.access_log.then(|| {
        (
            req.method().clone(),
            req.uri().clone(),
            std::time::Instant::now(),
        )
    });
    let mut resp = forward_to_backend(lb, req, peer).await;
    resp.headers_mut()
        .entry(REQUEST_ID)
        .or_insert(request_id.clone());
    if let Some((method, uri, started)) = access {
        tracing::info!(
            target: "weir_lb::access",
            client = %peer.ip(),
            %method,
            path = uri.path(),
            status = resp.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            request_id = request_id.to_str().unwrap_or("-"),
            "request"
        );
    }
    resp
}

const REQUEST_ID: &str = "x-request-id";

/// A fresh request id as a header value.
fn next_request_id() -> HeaderValue {
    HeaderValue::from_bytes(&next_request_id_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// A fresh request id: a random per-process prefix and a counter in hex, so
/// making one costs no trip to the kernel's random source. Each thread takes
/// counters in blocks, so the cores do not contend for one atomic.
pub(crate) fn next_request_id_bytes() -> [u8; 32] {
    const BLOCK: u64 = 1024;
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static BLOCKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    thread_local! {
        static NEXT: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
    }
    let prefix = *PREFIX.get_or_init(rand::random);
    let n = NEXT.with(|next| {
        let (mut n, mut end) = next.get();
        if n == end {
            n = BLOCKS.fetch_add(1, Ordering::Relaxed) * BLOCK;
            end = n + BLOCK;
        }
        next.set((n + 1, end));
        n
    });
    let mut buf = [0u8; 32];
    let hex = b"0123456789abcdef";
    for (i, b) in prefix
        .to_be_bytes()
        .iter()
        .chain(n.to_be_bytes().iter())
        .enumerate()
    {
        buf[i * 2] = hex[usize::from(b >> 4)];
        buf[i * 2 + 1] = hex[usize::from(b & 0xf)];
    }
    buf
}

/// Bodies up to this size are kept to be replayed on another backend.
pub(crate) const REPLAY_MAX_BYTES: u64 = 64 * 1024;

/// Whether a request's body may be kept for a replay: a safe or idempotent
/// method (RFC 9110 §9.2.2) or an Idempotency-Key, and a declared length
/// small enough to hold.
fn may_replay(parts: &http::request::Parts) -> bool {
    let idempotent = is_idempotent(&parts.method) || parts.headers.contains_key("idempotency-key");
    let small = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n <= REPLAY_MAX_BYTES);
    idempotent && small
}

/// A safe or idempotent method (RFC 9110 §9.2.2): may be sent again.
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// What the health and load bookkeeping reads of a backend's answer.
pub(crate) struct Answer<'a> {
    pub status: u16,
    pub retry_after: bool,
    /// Its `X-Weir-Node`.
    pub node_name: Option<&'a [u8]>,
}

/// Health and load bookkeeping for an answer, on either path: the node's
/// name, a fast refusal (429, or 503 with Retry-After) counted as load, and a
/// 5xx as a failure toward ejection.
pub(crate) fn note_answer(
    lb: &Lb,
    backends: &[Arc<Backend>],
    backend: &Backend,
    answer: Answer<'_>,
) {
    if let Some(name) = answer.node_name {
        backend.note_node_name(name);
    }
    if answer.status == 429 || (answer.status == 503 && answer.retry_after) {
        // A fast refusal is load, not speed.
        backend.record_refusal();
    }
    if answer.status >= 500 {
        backend.record_error();
        outlier::record_failure(&lb.config.ejection, backends, backend, false);
    } else {
        backend.note_success();
    }
}

async fn forward_to_backend(lb: &Lb, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    // Only consistent hashing reads the key; don't hash for the others.
    let key = if lb.strategy.load().strategy == crate::Strategy::ConsistentHash {
        affinity_key(&lb.strategy.load().hash_key, &parts.headers, peer)
    } else {
        0
    };
    strip_hop_by_hop(&mut parts.headers);
    append_forwarded_for(&mut parts.headers, peer);
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static("http"));
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    // A request without a body can be sent again if the first backend could not
    // even be connected to. One with a small body is kept to be sent again
    // when its method is idempotent or it carries an Idempotency-Key; any
    // other body is streamed once.
    let empty = body.is_end_stream();
    let (kept, mut body) = if !empty && may_replay(&parts) {
        match body.collect().await {
            Ok(collected) => (Some(collected.to_bytes()), None),
            Err(_) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "body_read_failed",
                    "the request body could not be read",
                )
            }
        }
    } else {
        (None, Some(body))
    };
    let replayable = kept.is_some() || empty;
    let backends = lb.backends.snapshot();
    let mut tried: Vec<&Arc<Backend>> = Vec::with_capacity(MAX_CONNECT_ATTEMPTS);
    let attempts = if replayable {
        MAX_CONNECT_ATTEMPTS.min(backends.len().max(1))
    } else {
        1
    };
    let mut parts = Some(parts);
    lb.retry_budget.record_request();

    for attempt in 1..=attempts {
        if attempt > 1 && !lb.retry_budget.try_retry() {
            return json_error(
                StatusCode::BAD_GATEWAY,
                "backend_unreachable",
                "the chosen API node could not be reached (retry budget spent)",
            );
        }
        let (backend, guard) = match pick_or_queue(lb, &backends, &tried, key).await {
            Ok(Some(reserved)) => reserved,
            Ok(None) => break,
            Err(Overloaded) => return overloaded_response(),
        };
        tried.push(backend);
        let upstream_body = match (&kept, body.take()) {
            (Some(bytes), _) => Body::from(bytes.clone()),
            (None, Some(b)) if !replayable => Body::new(b),
            _ => Body::empty(),
        };
        // HTTP/1.1 to the backend: origin-form target, the client's Host kept.
        // The last attempt takes the request head; earlier ones copy it.
        let head = if attempt == attempts {
            parts.take()
        } else {
            parts.clone()
        };
        let Some(head) = head else { break };
        let mut upstream = Request::from_parts(head, upstream_body);
        *upstream.uri_mut() = Uri::from(path_and_query.clone());
        *upstream.version_mut() = http::Version::HTTP_11;
        if !upstream.headers().contains_key(header::HOST) {
            if let Ok(host) = HeaderValue::from_str(backend.authority.as_str()) {
                upstream.headers_mut().insert(header::HOST, host);
            }
        }

        let started = std::time::Instant::now();
        let sent = tokio::time::timeout(
            lb.config.upstream_timeout,
            upstream::send(
                backend.authority.as_str(),
                upstream,
                lb.config.connect_timeout,
                lb.config.upstream_idle_timeout,
            ),
        )
        .await;
        match sent {
            Ok(Ok(resp)) => {
                backend.record_latency(started.elapsed());
                let answer = Answer {
                    status: resp.status().as_u16(),
                    retry_after: resp.headers().contains_key(header::RETRY_AFTER),
                    node_name: resp.headers().get("x-weir-node").map(|v| v.as_bytes()),
                };
                note_answer(lb, &backends, backend, answer);
                let (mut rparts, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                // The guard lives as long as the body stream, so least-connections
                // counts a response as in flight until it has been sent.
                let rbody = rbody.map_frame(move |frame| {
                    let _in_flight = &guard;
                    frame
                });
                return Response::from_parts(rparts, Body::new(rbody));
            }
            Ok(Err(e @ UpstreamError::Connect(_))) => {
                backend.record_error();
                outlier::record_failure(&lb.config.ejection, &backends, backend, true);
                tracing::warn!(backend = %backend.authority, error = %e, "connect failed");
                if !replayable {
                    return json_error(
                        StatusCode::BAD_GATEWAY,
                        "backend_unreachable",
                        "the chosen API node could not be reached",
                    );
                }
            }
            Ok(Err(e)) => {
                backend.record_error();
                tracing::warn!(backend = %backend.authority, error = %e, "upstream failed");
                return json_error(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "the API node failed to answer",
                );
            }
            Err(_) => {
                backend.record_error();
                return json_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "the API node did not answer in time",
                );
            }
        }
    }
    if tried.is_empty() {
        json_error(
            StatusCode::BAD_GATEWAY,
            "no_backend",
            "no API node is configured",
        )
    } else {
        json_error(
            StatusCode::BAD_GATEWAY,
            "backend_unreachable",
            "no API node could be reached",
        )
    }
}

/// Every backend is at capacity and the wait queue is full (or the wait ran
/// out): the request is refused with 503 and Retry-After.
pub(crate) struct Overloaded;

fn overloaded_response() -> Response<Body> {
    let mut resp = json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "every API node is at capacity; retry shortly",
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// A backend by [`pick`]; when every backend is at `max_in_flight`, waits in a
/// short bounded queue for a slot, and refuses at once when the queue is full
/// or the wait runs out — latency stays bounded under overload instead of
/// growing with it.
pub(crate) async fn pick_or_queue<'a>(
    lb: &Lb,
    backends: &'a [Arc<Backend>],
    tried: &[&Arc<Backend>],
    key: u64,
) -> Result<Option<(&'a Arc<Backend>, InFlightGuard)>, Overloaded> {
    if let Some(b) = reserve(lb, backends, tried, key) {
        return Ok(Some(b));
    }
    let Some(cap) = lb.config.max_in_flight else {
        return Ok(None);
    };
    let saturated = backends
        .iter()
        .any(|b| !b.is_draining() && b.in_flight() >= cap);
    if !saturated {
        return Ok(None);
    }
    if lb.queued.fetch_add(1, Ordering::AcqRel) >= lb.config.queue_size {
        lb.queued.fetch_sub(1, Ordering::AcqRel);
        lb.rejected_overload.fetch_add(1, Ordering::Relaxed);
        return Err(Overloaded);
    }
    let _queued = lb.backends.queue();
    let deadline = tokio::time::Instant::now() + lb.config.queue_timeout;
    let picked = loop {
        let freed = lb.backends.slot_freed();
        if let Some(b) = reserve(lb, backends, tried, key) {
            break Some(b);
        }
        if tokio::time::timeout_at(deadline, freed).await.is_err() {
            break reserve(lb, backends, tried, key);
        }
    };
    lb.queued.fetch_sub(1, Ordering::AcqRel);
    match picked {
        Some(b) => Ok(Some(b)),
        None => {
            lb.rejected_overload.fetch_add(1, Ordering::Relaxed);
            Err(Overloaded)
        }
    }
}

/// A backend by [`pick`], with its in-flight slot taken. Under a
/// `max_in_flight` cap, another request may take the slot between the pick and
/// the reservation; then it picks again.
fn reserve<'a>(
    lb: &Lb,
    backends: &'a [Arc<Backend>],
    tried: &[&Arc<Backend>],
    key: u64,
) -> Option<(&'a Arc<Backend>, InFlightGuard)> {
    for _ in 0..backends.len().max(1) * 2 {
        let b = pick(lb, backends, tried, key)?;
        match lb.config.max_in_flight {
            None => return Some((b, b.start_request())),
            Some(cap) => {
                if let Some(guard) = b.try_start_request(cap) {
                    return Some((b, guard));
                }
            }
        }
    }
    None
}

/// A healthy backend not tried yet; if every backend is marked down, any untried
/// one (a stale health verdict beats a certain 502).
fn pick<'a>(
    lb: &Lb,
    backends: &'a [Arc<Backend>],
    tried: &[&Arc<Backend>],
    key: u64,
) -> Option<&'a Arc<Backend>> {
    let active = lb.strategy.load();
    // A draining backend gets nothing new, even when it is the last one left.
    let cap = lb.config.max_in_flight.unwrap_or(u64::MAX);
    let untried = |b: &Backend| {
        !b.is_draining()
            && b.in_flight() < cap
            && !tried.iter().any(|t| std::ptr::eq(t.as_ref(), b))
    };
    let slow_start = lb.config.slow_start;
    let healthy_untried = |b: &Backend| {
        b.is_available()
            && untried(b)
            && (slow_start.is_zero() || {
                let share = b.slow_start_share(slow_start);
                share >= 1.0 || rand::random::<f64>() < share
            })
    };
    active
        .selector
        .select(
            backends,
            &Pick {
                key,
                eligible: &healthy_untried,
            },
        )
        .or_else(|| {
            active.selector.select(
                backends,
                &Pick {
                    key,
                    eligible: &untried,
                },
            )
        })
        .map(|i| &backends[i])
}

/// The request's affinity key for `consistent_hash`: the named header's value
/// when configured and present, else the client's IP.
fn affinity_key(hash_key: &HashKey, headers: &HeaderMap, peer: SocketAddr) -> u64 {
    if let HashKey::Header(name) = hash_key {
        if let Some(v) = headers.get(name) {
            return hash_key_bytes(v.as_bytes());
        }
    }
    ip_key(peer.ip())
}

/// A client IP's `consistent_hash` key.
pub(crate) fn ip_key(ip: std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(ip) => hash_key_bytes(&ip.octets()),
        std::net::IpAddr::V6(ip) => hash_key_bytes(&ip.octets()),
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        remove_connection_named(headers);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Removes the headers a `Connection` header names (RFC 9110 §7.6.1).
fn remove_connection_named(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
    let ip = peer.ip().to_string();
    let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip}"),
        _ => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert("x-forwarded-for", v);
    }
}

/// `{"error":{"code","message"}}` with `status`.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let mut resp = Response::new(Body::from(json_error_body(code, message)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The body of a JSON error: `{"error":{"code","message"}}`.
pub(crate) fn json_error_body(code: &str, message: &str) -> String {
    serde_json::json!({ "error": { "code": code, "message": message } }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn appends_to_forwarded_for() {
        let mut h = HeaderMap::new();
        let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        append_forwarded_for(&mut h, peer);
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        append_forwarded_for(&mut h, "127.0.0.1:1".parse().unwrap());
        assert_eq!(h["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    }
}
