//! Forwarding one request to a backend and its answer back, unbuffered.

pub(crate) mod tunnel;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use tower::ServiceExt;

use crate::backends::dispatch::{self, Answer};
use crate::request::attempt::{self, Answered, Failure, Plan, Refusal, Transport};
use crate::request::phases::{self, AnswerHeaders, RateLimited, Route};
use crate::request::rules::{self, REQUEST_ID};
use crate::state::Lb;
use crate::upstream::{self, UpstreamError};
use crate::Backend;

/// One request on the general path, through the phases both paths share:
/// the head's limits, the route (admin API, redirect, backend), then
/// [`forward`].
pub(crate) async fn handle(
    lb: Arc<Lb>,
    admin: Router,
    req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Result<Response<Body>, Infallible> {
    if let Err(refusal) = rules::check_request_head(&req, lb.config.max_url_bytes) {
        return Ok(refusal.into_response());
    }
    match phases::route(&lb, req.uri().path(), tls, peer.ip()) {
        Route::Admin => {
            let mut req = req.map(Body::new);
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            admin.oneshot(req).await
        }
        Route::Redirect(redirect) => Ok(redirect.answer(&req)),
        Route::Backend => Ok(forward(&lb, req, peer, tls).await),
    }
}

/// The rate limit's verdict, then `req` forwarded to a backend chosen by the
/// active strategy; its answer, or a JSON 429/502/503/504 of the lb's own.
/// Every request carries an `X-Request-Id` (the client's, or a fresh one) to
/// the backend and back; `tls` when the client came over TLS
/// (`X-Forwarded-Proto: https`).
async fn forward(
    lb: &Lb,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Response<Body> {
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
    let span = trace_start(&mut req);
    let client = lb.rate_limits.client_ip(peer.ip(), req.headers());
    let admitted = phases::admit(lb, client, req.method(), req.uri().path()).await;
    let (mut resp, rate_limit) = match admitted {
        Ok(rate_limit) => (forward_to_backend(lb, req, peer, tls).await, rate_limit),
        Err(limited) => {
            let message = limited.message();
            let resp = rules::json_error(RateLimited::STATUS, RateLimited::CODE, &message);
            (resp, Some(limited.headers))
        }
    };
    if let Some((span, method, path)) = span {
        phases::trace_end(span, &method, &path, resp.status().as_u16());
    }
    resp.headers_mut()
        .entry(REQUEST_ID)
        .or_insert(request_id.clone());
    AnswerHeaders::new(lb, tls, rate_limit.as_ref()).apply(resp.headers_mut());
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

/// The lb's span of `req` (see [`phases::trace_start`]), its `traceparent`
/// now the span's; with the method and path its end records.
fn trace_start(req: &mut Request<Incoming>) -> Option<(weir_trace::Span, http::Method, String)> {
    if !weir_trace::tracer().is_exporting() {
        return None;
    }
    let parent = weir_trace::TraceContext::from_headers(req.headers());
    let span = phases::trace_continue(parent.as_ref())?;
    let value =
        HeaderValue::from_str(&span.context().traceparent()).expect("hex is a header value");
    req.headers_mut().insert(TRACEPARENT, value);
    Some((span, req.method().clone(), req.uri().path().to_owned()))
}

const TRACEPARENT: &str = "traceparent";

async fn forward_to_backend(
    lb: &Lb,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let upgrade = rules::upgrade_wanted(&req);
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    // Only consistent hashing reads the key; don't hash for the others.
    let key = if lb.strategy.load().strategy == crate::Strategy::ConsistentHash {
        dispatch::affinity_key(&lb.strategy.load().hash_key, &parts.headers, peer)
    } else {
        0
    };
    rewrite_request_head(&mut parts, peer, tls);
    if let Some(protocol) = &upgrade {
        rules::keep_upgrade(&mut parts.headers, protocol.clone());
    }
    let body = match RequestBody::take(&parts, body).await {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    let plan = Plan {
        key,
        replayable: body.replayable(),
        started,
    };
    let proxy_header = lb
        .config
        .send_proxy_protocol
        .then(|| proxy_header(peer, parts.extensions.get::<LocalAddr>().map(|l| l.0)))
        .flatten();
    let mut transport = HyperClient {
        lb,
        proxy_header,
        head: Some(parts),
        body,
        upgrade: upgrade.is_some(),
    };
    let backends = lb.backends.snapshot();
    match attempt::run(lb, &backends, plan, &mut transport).await {
        Ok(Answered { guard, answer, .. }) => {
            if answer.status() == StatusCode::SWITCHING_PROTOCOLS {
                if let Some(client) = client_upgrade {
                    return switch_protocols(lb, client, answer, guard);
                }
            }
            let (mut rparts, rbody) = answer.into_parts();
            rules::strip_hop_by_hop(&mut rparts.headers);
            // The guard lives as long as the body stream, so least-connections
            // counts a response as in flight until it has been sent.
            let rbody = rbody.map_frame(move |frame| {
                let _in_flight = &guard;
                frame
            });
            Response::from_parts(rparts, Body::new(rbody))
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// The backend agreed to switch protocols: the `101` goes to the client with
/// the protocol it names, and once both sides have switched, a tunnel
/// relays between them.
fn switch_protocols(
    lb: &Lb,
    client: hyper::upgrade::OnUpgrade,
    mut answer: Response<Body>,
    guard: crate::backends::InFlightGuard,
) -> Response<Body> {
    let backend = hyper::upgrade::on(&mut answer);
    let (mut parts, _) = answer.into_parts();
    let protocol = parts.headers.get(header::UPGRADE).cloned();
    rules::strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = protocol {
        rules::keep_upgrade(&mut parts.headers, protocol);
    }
    crate::proxy::tunnel::spawn(lb, client, backend, guard);
    Response::from_parts(parts, Body::empty())
}

/// HTTP/1.1 to the backend: origin-form target, the client's Host kept,
/// the hop-by-hop headers swapped for the forwarding ones.
fn rewrite_request_head(parts: &mut http::request::Parts, peer: SocketAddr, tls: bool) {
    rules::strip_hop_by_hop(&mut parts.headers);
    rules::append_forwarded_for(&mut parts.headers, peer);
    parts.headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    parts.uri = Uri::from(path_and_query);
    parts.version = http::Version::HTTP_11;
}

/// The request body as the attempts see it.
enum RequestBody {
    Empty,
    /// A small body of a request that may be sent again, read whole.
    Kept(Bytes),
    /// Any other body, streamed once.
    Streamed(Option<Incoming>, ClientFault),
}

/// Set when the client's body failed while being streamed: the attempt
/// failed by the client's fault, not the backend's.
#[derive(Clone, Default)]
struct ClientFault(Arc<AtomicBool>);

impl ClientFault {
    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl RequestBody {
    /// A request with a small body is kept to be sent again when its method
    /// is idempotent or it carries an Idempotency-Key; any other body is
    /// streamed once.
    async fn take(parts: &http::request::Parts, body: Incoming) -> Result<Self, Refusal> {
        if body.is_end_stream() {
            return Ok(RequestBody::Empty);
        }
        if !rules::may_replay(parts) {
            return Ok(RequestBody::Streamed(Some(body), ClientFault::default()));
        }
        match body.collect().await {
            Ok(collected) => Ok(RequestBody::Kept(collected.to_bytes())),
            Err(_) => Err(Refusal::BadBody),
        }
    }

    fn replayable(&self) -> bool {
        !matches!(self, RequestBody::Streamed(..))
    }

    /// The body for the next attempt.
    fn next(&mut self) -> Body {
        match self {
            RequestBody::Empty => Body::empty(),
            RequestBody::Kept(bytes) => Body::from(bytes.clone()),
            RequestBody::Streamed(body, fault) => match body.take() {
                Some(body) => {
                    let fault = fault.clone();
                    Body::new(body.map_err(move |e| {
                        fault.0.store(true, Ordering::Relaxed);
                        e
                    }))
                }
                None => Body::empty(),
            },
        }
    }

    /// Whether the client's body failed while being sent.
    fn failed(&self) -> bool {
        matches!(self, RequestBody::Streamed(_, fault) if fault.is_set())
    }
}

/// The lb's own address of a client's connection (a request extension).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalAddr(pub SocketAddr);

/// The PROXY v2 header naming `peer` (and the address it reached), for a
/// connection to a backend.
fn proxy_header(peer: SocketAddr, local: Option<SocketAddr>) -> Option<Vec<u8>> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    let local = match (peer, local) {
        (SocketAddr::V4(_), Some(l @ SocketAddr::V4(_)))
        | (SocketAddr::V6(_), Some(l @ SocketAddr::V6(_))) => l,
        (SocketAddr::V4(_), _) => SocketAddr::from(([0, 0, 0, 0], 0)),
        (SocketAddr::V6(_), _) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    };
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (peer, local),
    )
    .build()
    .ok()
}

/// The PROXY v2 `LOCAL` header: a connection of the lb's own (a health
/// check), to be taken at its real addresses.
pub(crate) fn proxy_header_local() -> Vec<u8> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    Builder::with_addresses(
        Version::Two | Command::Local,
        Protocol::Unspecified,
        ppp::v2::Addresses::Unspecified,
    )
    .build()
    .unwrap_or_default()
}

/// The general path's [`Transport`]: hyper's client on a per-thread pool.
struct HyperClient<'l> {
    lb: &'l Lb,
    /// With `--send-proxy-protocol`: the header each connection opens with.
    proxy_header: Option<Vec<u8>>,
    /// The rewritten head; the last attempt takes it, earlier ones copy it.
    head: Option<http::request::Parts>,
    body: RequestBody,
    /// An upgrade request: sent on a connection of its own.
    upgrade: bool,
}

impl Transport for HyperClient<'_> {
    type Answer = Response<Body>;

    async fn send(&mut self, backend: &Backend, last: bool) -> Result<Self::Answer, Failure> {
        let head = if last {
            self.head.take()
        } else {
            self.head.clone()
        };
        let head = head.ok_or_else(|| Failure::Upstream("the request was already sent".into()))?;
        let mut upstream = Request::from_parts(head, self.body.next());
        if !upstream.headers().contains_key(header::HOST) {
            if let Ok(host) = HeaderValue::from_str(backend.authority.as_str()) {
                upstream.headers_mut().insert(header::HOST, host);
            }
        }
        let config = &self.lb.config;
        let route = upstream::Route::to(backend, self.lb.backend_tls())
            .with_proxy_header(self.proxy_header.as_deref());
        let connect_timeout = config.connect_timeout_for(last);
        let sending = async {
            if self.upgrade {
                upstream::send_upgrade(route, upstream, connect_timeout)
                    .await
                    .map(|resp| resp.map(Body::new))
            } else {
                let idle = config.upstream_idle_timeout;
                upstream::send(route, upstream, connect_timeout, idle).await
            }
        };
        let sent = tokio::time::timeout(config.upstream_timeout, sending).await;
        match sent {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(UpstreamError::Connect(e))) => Err(Failure::Connect(e)),
            Ok(Err(UpstreamError::Request(e))) if self.body.failed() => {
                Err(Failure::Client(e.to_string()))
            }
            Ok(Err(UpstreamError::Request(e))) => Err(Failure::Upstream(e.to_string())),
            Err(_) => Err(Failure::Timeout),
        }
    }

    fn read<'a>(&'a self, answer: &'a Self::Answer) -> Answer<'a> {
        Answer {
            status: answer.status().as_u16(),
            retry_after: answer.headers().contains_key(header::RETRY_AFTER),
            node_name: answer.headers().get("x-weir-node").map(|v| v.as_bytes()),
        }
    }
}
