//! Keep-alive connections to the backends, pooled per thread.
//!
//! Each thread keeps its own idle HTTP/1.1 connections per backend (hyper's
//! low-level `client::conn`), so taking and returning one is a `RefCell`
//! borrow, not a lock shared across threads; an HTTP/2 backend (`h2c://`,
//! or `https://` when ALPN chose `h2`) has one multiplexed connection per
//! thread instead. A connection returns to the pool
//! when its response body has been fully read (or dropped). A request that
//! finds its pooled connection closed before anything was sent is sent again
//! on a fresh one — the server closing an idle keep-alive connection is not a
//! failure.

pub mod tls;

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::backends::{Backend, Protocol};
use crate::upstream::tls::BackendTls;

/// Most idle connections kept per backend per thread.
const MAX_IDLE_PER_BACKEND: usize = 256;

/// Why a request did not get a response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made: nothing reached the backend.
    #[error("connect failed: {0}")]
    Connect(String),
    /// The request (or part of it) may have reached the backend.
    #[error("upstream failed: {0}")]
    Request(#[from] hyper::Error),
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

thread_local! {
    static IDLE: RefCell<HashMap<String, Vec<Idle>>> = RefCell::new(HashMap::new());
    static HTTP2: RefCell<HashMap<String, http2::SendRequest<Body>>> = RefCell::new(HashMap::new());
}

/// Where a request goes and how.
#[derive(Clone, Copy)]
pub(crate) struct Route<'a> {
    pub authority: &'a str,
    pub protocol: Protocol,
    /// For `https://` backends.
    pub tls: Option<&'a BackendTls>,
    /// Written first on a connection of this request's own, never pooled.
    pub proxy_header: Option<&'a [u8]>,
}

impl<'a> Route<'a> {
    pub fn to(backend: &'a Backend, tls: Option<&'a BackendTls>) -> Route<'a> {
        Route {
            authority: backend.authority.as_str(),
            protocol: backend.protocol,
            tls,
            proxy_header: None,
        }
    }

    pub fn with_proxy_header(self, header: Option<&'a [u8]>) -> Route<'a> {
        Route {
            proxy_header: header,
            ..self
        }
    }

    /// The pool's key: TLS and plain connections to one address apart.
    fn key(&self) -> std::borrow::Cow<'a, str> {
        match self.protocol {
            Protocol::Http1 => self.authority.into(),
            _ => format!("{:?}/{}", self.protocol, self.authority).into(),
        }
    }

    fn host(&self) -> &'a str {
        match self.authority.rfind(':') {
            Some(i) if !self.authority[i..].contains(']') => &self.authority[..i],
            _ => self.authority,
        }
    }
}

/// A new connection, as the backend's protocol and ALPN settle.
enum Opened {
    Http1(SendRequest<Body>),
    Http2(http2::SendRequest<Body>),
}

fn take_idle(key: &str, max_idle: Duration) -> Option<SendRequest<Body>> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(key)?;
        while let Some(c) = list.pop() {
            if c.sender.is_ready() && c.since.elapsed() < max_idle {
                return Some(c.sender);
            }
        }
        None
    })
}

fn put_idle(key: &str, sender: SendRequest<Body>) {
    if !sender.is_ready() {
        return;
    }
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(key.to_string()).or_default();
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    });
}

/// A TCP connection to a backend within `timeout`, Nagle off; both paths
/// connect through here. The error says why, for the log.
pub(crate) async fn connect_tcp(authority: &str, timeout: Duration) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(authority))
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn connect(
    route: Route<'_>,
    timeout: Duration,
    http1_only: bool,
) -> Result<Opened, UpstreamError> {
    let mut stream = connect_tcp(route.authority, timeout)
        .await
        .map_err(UpstreamError::Connect)?;
    if let Some(header) = route.proxy_header {
        // Before anything else, TLS included (as HAProxy's send-proxy-v2).
        tokio::io::AsyncWriteExt::write_all(&mut stream, header)
            .await
            .map_err(|e| UpstreamError::Connect(format!("PROXY header: {e}")))?;
    }
    let failed = |e: hyper::Error| UpstreamError::Connect(e.to_string());
    match (route.protocol, route.tls) {
        (Protocol::Http1, _) => Ok(Opened::Http1(http1_over(stream).await.map_err(failed)?)),
        (Protocol::H2c, _) => Ok(Opened::Http2(http2_over(stream).await.map_err(failed)?)),
        (Protocol::Https, None) => Err(UpstreamError::Connect("no TLS client configured".into())),
        (Protocol::Https, Some(tls)) => {
            let handshake = tls.connect(stream, route.host(), http1_only);
            let (stream, h2) = tokio::time::timeout(timeout, handshake)
                .await
                .map_err(|_| UpstreamError::Connect(format!("TLS handshake over {timeout:?}")))?
                .map_err(UpstreamError::Connect)?;
            if h2 {
                Ok(Opened::Http2(http2_over(stream).await.map_err(failed)?))
            } else {
                Ok(Opened::Http1(http1_over(stream).await.map_err(failed)?))
            }
        }
    }
}

async fn http1_over<S>(stream: S) -> Result<SendRequest<Body>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    // With upgrades: a `101` hands the connection over (WebSockets); any
    // other answer leaves it an ordinary keep-alive connection.
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

async fn http2_over<S>(stream: S) -> Result<http2::SendRequest<Body>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}

/// Sends an upgrade request on a fresh connection of its own, which a `101`
/// answer hands over (`hyper::upgrade::on` the response) and anything else
/// ends with its body: an upgraded connection never returns to the pool.
pub(crate) async fn send_upgrade(
    route: Route<'_>,
    req: Request<Body>,
    connect_timeout: Duration,
) -> Result<Response<Incoming>, UpstreamError> {
    match connect(route, connect_timeout, true).await? {
        Opened::Http1(mut sender) => Ok(sender.send_request(req).await?),
        Opened::Http2(_) => Err(UpstreamError::Connect(
            "an HTTP/2 backend cannot take an HTTP/1.1 upgrade".into(),
        )),
    }
}

/// Sends `req` (origin-form URI, Host set) along `route` over a pooled or
/// fresh connection.
pub(crate) async fn send(
    route: Route<'_>,
    mut req: Request<Body>,
    connect_timeout: Duration,
    max_idle: Duration,
) -> Result<Response<Body>, UpstreamError> {
    if route.proxy_header.is_some() {
        // The header names one client: the connection is this request's.
        return match connect(route, connect_timeout, false).await? {
            Opened::Http1(mut sender) => Ok(sender.send_request(req).await?.map(Body::new)),
            Opened::Http2(sender) => send_http2(sender, route, req).await,
        };
    }
    let key = route.key();
    if let Some(sender) = shared_http2(&key) {
        return send_http2(sender, route, req).await;
    }
    // A pooled connection the backend closed meanwhile hands the request back
    // unsent; then it goes out on a fresh connection.
    while let Some(mut sender) = take_idle(&key, max_idle) {
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok(pooled(&key, sender, resp)),
            Err(mut e) => match e.take_message() {
                Some(unsent) => req = unsent,
                None => return Err(UpstreamError::Request(e.into_error())),
            },
        }
    }
    match connect(route, connect_timeout, false).await? {
        Opened::Http1(mut sender) => {
            let resp = sender.send_request(req).await?;
            Ok(pooled(&key, sender, resp))
        }
        Opened::Http2(sender) => {
            HTTP2.with(|h2| h2.borrow_mut().insert(key.to_string(), sender.clone()));
            send_http2(sender, route, req).await
        }
    }
}

/// This thread's HTTP/2 connection to the backend, while it is open.
fn shared_http2(key: &str) -> Option<http2::SendRequest<Body>> {
    HTTP2.with(|h2| {
        let mut h2 = h2.borrow_mut();
        let sender = h2.get(key)?;
        if sender.is_closed() {
            h2.remove(key);
            return None;
        }
        Some(sender.clone())
    })
}

/// One stream on an HTTP/2 connection: the target in absolute form (the
/// client's Host becomes `:authority`), `TE: trailers` (gRPC needs it; the
/// lb passes trailers on).
async fn send_http2(
    mut sender: http2::SendRequest<Body>,
    route: Route<'_>,
    mut req: Request<Body>,
) -> Result<Response<Body>, UpstreamError> {
    let authority = req
        .headers_mut()
        .remove(http::header::HOST)
        .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
        .map_or_else(|| route.authority.to_string(), |a| a.to_string());
    let scheme = match route.protocol {
        Protocol::Https => "https",
        _ => "http",
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    *req.uri_mut() = format!("{scheme}://{authority}{path}")
        .parse()
        .map_err(|e| UpstreamError::Connect(format!("no URL for HTTP/2: {e}")))?;
    *req.version_mut() = http::Version::HTTP_2;
    req.headers_mut()
        .insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    sender.ready().await?;
    Ok(sender.send_request(req).await?.map(Body::new))
}

/// The response, with its connection going back to the pool once the body ends.
fn pooled(authority: &str, sender: SendRequest<Body>, resp: Response<Incoming>) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let body = ReturnOnEnd {
        inner: body,
        sender: Some(sender),
        key: authority.to_string(),
    };
    Response::from_parts(parts, Body::new(body))
}

/// A response body that returns its connection to the pool when it ends.
struct ReturnOnEnd {
    inner: Incoming,
    sender: Option<SendRequest<Body>>,
    key: String,
}

impl ReturnOnEnd {
    fn release(&mut self) {
        if let Some(sender) = self.sender.take() {
            put_idle(&self.key, sender);
        }
    }
}

impl hyper::body::Body for ReturnOnEnd {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.release();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ReturnOnEnd {
    fn drop(&mut self) {
        // Dropped before the end: the connection still holds the rest of the
        // body, so it cannot be reused; a finished one can.
        if hyper::body::Body::is_end_stream(&self.inner) {
            self.release();
        }
    }
}
