//! Keep-alive connections to the backends, pooled per thread.
//!
//! Each thread keeps its own idle HTTP/1.1 connections per backend (hyper's
//! low-level `client::conn`), so taking and returning one is a `RefCell`
//! borrow, not a lock shared across threads. A connection returns to the pool
//! when its response body has been fully read (or dropped). A request that
//! finds its pooled connection closed before anything was sent is sent again
//! on a fresh one — the server closing an idle keep-alive connection is not a
//! failure.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

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

async fn connect(authority: &str, timeout: Duration) -> Result<SendRequest<Body>, UpstreamError> {
    let stream = connect_tcp(authority, timeout)
        .await
        .map_err(UpstreamError::Connect)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| UpstreamError::Connect(e.to_string()))?;
    // With upgrades: a `101` hands the connection over (WebSockets); any
    // other answer leaves it an ordinary keep-alive connection.
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Sends an upgrade request on a fresh connection of its own, which a `101`
/// answer hands over (`hyper::upgrade::on` the response) and anything else
/// ends with its body: an upgraded connection never returns to the pool.
pub async fn send_upgrade(
    authority: &str,
    req: Request<Body>,
    connect_timeout: Duration,
) -> Result<Response<Incoming>, UpstreamError> {
    let mut sender = connect(authority, connect_timeout).await?;
    Ok(sender.send_request(req).await?)
}

/// Sends `req` (origin-form URI, Host set) to the backend at `authority` over a
/// pooled or fresh connection.
pub async fn send(
    authority: &str,
    mut req: Request<Body>,
    connect_timeout: Duration,
    max_idle: Duration,
) -> Result<Response<Body>, UpstreamError> {
    // A pooled connection the backend closed meanwhile hands the request back
    // unsent; then it goes out on a fresh connection.
    while let Some(mut sender) = take_idle(authority, max_idle) {
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok(pooled(authority, sender, resp)),
            Err(mut e) => match e.take_message() {
                Some(unsent) => req = unsent,
                None => return Err(UpstreamError::Request(e.into_error())),
            },
        }
    }
    let mut sender = connect(authority, connect_timeout).await?;
    let resp = sender.send_request(req).await?;
    Ok(pooled(authority, sender, resp))
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
