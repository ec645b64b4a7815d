//! Forwarding one request to a backend and its answer back, unbuffered.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};

use crate::dispatch::{self, Answer, Overloaded};
use crate::rules::{self, json_error, MAX_CONNECT_ATTEMPTS, REQUEST_ID};
use crate::state::Lb;
use crate::upstream::{self, UpstreamError};
use crate::{outlier, Backend};

/// Forwards `req` to a backend chosen by the active strategy and returns its
/// answer, or a JSON 502/503/504 when none answers. Every request carries an
/// `X-Request-Id` (the client's, or a fresh one) to the backend and back.
pub async fn forward(lb: &Lb, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let request_id = match req.headers().get(REQUEST_ID) {
        Some(v) if !v.is_empty() && v.len() <= 128 => v.clone(),
        _ => {
            let fresh = rules::next_request_id();
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

async fn forward_to_backend(lb: &Lb, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    // Only consistent hashing reads the key; don't hash for the others.
    let key = if lb.strategy.load().strategy == crate::Strategy::ConsistentHash {
        dispatch::affinity_key(&lb.strategy.load().hash_key, &parts.headers, peer)
    } else {
        0
    };
    rules::strip_hop_by_hop(&mut parts.headers);
    rules::append_forwarded_for(&mut parts.headers, peer);
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
    let (kept, mut body) = if !empty && rules::may_replay(&parts) {
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
        let (backend, guard) = match dispatch::pick_or_queue(lb, &backends, &tried, key).await {
            Ok(Some(reserved)) => reserved,
            Ok(None) => break,
            Err(Overloaded) => return dispatch::overloaded_response(),
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
                dispatch::note_answer(lb, &backends, backend, answer);
                let (mut rparts, rbody) = resp.into_parts();
                rules::strip_hop_by_hop(&mut rparts.headers);
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
