//! One request on the fast path: pick a backend, send the rewritten head and
//! the body, relay the answer back as it comes; retries, health bookkeeping
//! and JSON errors as on the general path ([`crate::proxy`]).

use std::pin::Pin;
use std::time::{Duration, Instant};

use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::edge::client_io::ClientIo;
use tokio::time::Sleep;

use super::framing::{Consumed, Framing};
use super::head::{parse_response, Parsed, ResponseContext, ResponseHead};
use super::pool;
use super::reply::{access_log, respond_error, response_status};
pub(crate) use super::request::{Buffers, Flow, Request};
use crate::backends::dispatch::{self, Answer};
use crate::request::attempt::{self, Answered, Failure, Plan, Transport};
use crate::request::rules::{self, REPLAY_MAX_BYTES};
use crate::{upstream, Backend};

/// A response head larger than this is refused (502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Bytes read at once while relaying a body.
const RELAY_CHUNK: usize = 64 * 1024;
/// A body this small that did not come with its head is awaited, and goes
/// out with the head in one write.
const SMALL_BODY: u64 = 16 * 1024;

/// Forwards one request whose head (already rewritten into `bufs.head`) and
/// first body bytes are in `bufs.client`, and relays the answer to `client`.
/// On return, `bufs.client` still starts with this request's head.
pub(crate) async fn forward(
    req: Request<'_>,
    client: &mut ClientIo,
    bufs: &mut Buffers,
    timer: &mut Pin<Box<Sleep>>,
) -> (Flow, u16) {
    let lb = req.lb;
    let head = req.head;
    let started = Instant::now();
    let body_in_buf = (bufs.client.len() - head.head_len).min(head.content_length as usize);
    let fully_buffered = body_in_buf as u64 == head.content_length;
    // The same rule as the general path: a request without a body, or a
    // small one of an idempotent method or with an Idempotency-Key, may go
    // to another backend when the first cannot be reached.
    let replayable = fully_buffered
        && (head.content_length == 0
            || (head.content_length <= REPLAY_MAX_BYTES
                && (head.idempotency_key || rules::is_idempotent(&head.method))));
    let key = if lb.strategy.load().strategy == crate::Strategy::ConsistentHash {
        match &head.hash_value {
            Some(r) => crate::backends::selection::hash_key(&bufs.client[r.clone()]),
            None => dispatch::ip_key(req.peer.ip()),
        }
    } else {
        0
    };
    let backends = lb.backends.snapshot();
    let plan = Plan {
        key,
        replayable,
        started,
    };
    let mut transport = Relay {
        out: Outbound {
            req: &req,
            client,
            bufs,
            body_in_buf,
            replayable,
            body_sent: fully_buffered,
            started,
        },
        timer,
    };
    let attempted = attempt::run(lb, &backends, plan, &mut transport).await;
    let Outbound {
        client,
        bufs,
        body_sent,
        ..
    } = transport.out;
    match attempted {
        Ok(Answered {
            backend,
            guard,
            answer: (upstream, response),
        }) => {
            let authority = backend.authority.as_str();
            let flow = relay(client, upstream, authority, response, bufs, Instant::now()).await;
            drop(guard);
            let status = response_status(&bufs.head);
            access_log(&req, bufs, status, started);
            (flow, status)
        }
        // A body not wholly read from the client would be taken for the
        // next request: such a connection closes after the refusal.
        Err(refusal) => respond_error(&req, client, bufs, refusal, !body_sent, started).await,
    }
}

/// The fast path's [`Transport`]: the rewritten head and the body bytes
/// written to a pooled connection, the answer's head read back.
struct Relay<'r, 'q> {
    out: Outbound<'r, 'q>,
    /// The deadline for the answer, armed per attempt.
    timer: &'r mut Pin<Box<Sleep>>,
}

/// The request on its way out.
struct Outbound<'r, 'q> {
    req: &'r Request<'q>,
    client: &'r mut ClientIo,
    bufs: &'r mut Buffers,
    /// Body bytes already read with the head.
    body_in_buf: usize,
    replayable: bool,
    /// Whether the whole body has been read from the client.
    body_sent: bool,
    started: Instant,
}

impl Transport for Relay<'_, '_> {
    type Answer = (TcpStream, ResponseHead);

    async fn send(&mut self, backend: &Backend, last: bool) -> Result<Self::Answer, Failure> {
        let config = &self.out.req.lb.config;
        arm(self.timer, self.out.started, config.upstream_timeout);
        let connect_timeout = config.connect_timeout_for(last);
        tokio::select! {
            biased;
            sent = self.out.send(backend.authority.as_str(), connect_timeout) => sent,
            () = self.timer.as_mut() => Err(Failure::Timeout),
        }
    }

    fn read<'a>(&'a self, (_, head): &'a Self::Answer) -> Answer<'a> {
        Answer {
            status: head.status,
            retry_after: head.retry_after,
            node_name: head.node_name.clone().map(|r| &self.out.bufs.upstream[r]),
        }
    }
}

/// Points `timer` at `now + timeout`, lazily (as nginx does its timers): a
/// timer already due at most a tenth of the timeout (100 ms at most) earlier
/// is kept, so a keep-alive connection does not re-file its timer in the
/// wheel for every request. A timeout may fire that much early, never late.
pub(crate) fn arm(timer: &mut Pin<Box<Sleep>>, now: Instant, timeout: Duration) {
    let deadline = tokio::time::Instant::from_std(now + timeout);
    let slack = (timeout / 10).min(Duration::from_millis(100));
    let current = timer.deadline();
    if current > deadline || current + slack < deadline {
        timer.as_mut().reset(deadline);
    }
}

impl Outbound<'_, '_> {
    /// Sends the request on a pooled (or fresh) connection and reads the
    /// answer's head into `bufs.upstream`; the head for the client is then in
    /// `bufs.head`.
    async fn send(
        &mut self,
        authority: &str,
        connect_timeout: Duration,
    ) -> Result<(TcpStream, ResponseHead), Failure> {
        let config = &self.req.lb.config;
        let head_len = self.req.head.head_len;
        let body = head_len..head_len + self.body_in_buf;
        // Now, not when the request began: it may have queued for a slot.
        let mut pooled = pool::take(authority, config.upstream_idle_timeout, Instant::now());
        loop {
            let reused = pooled.is_some();
            let mut upstream = match pooled.take() {
                Some(stream) => stream,
                None => upstream::connect_tcp(authority, connect_timeout)
                    .await
                    .map_err(Failure::Connect)?,
            };
            let bufs = &mut *self.bufs;
            let written = if body.is_empty() {
                upstream.write_all(&bufs.head).await
            } else {
                write_two(&mut upstream, &bufs.head, &bufs.client[body.clone()]).await
            };
            if let Err(e) = written {
                if reused && self.replayable {
                    continue;
                }
                return Err(Failure::Upstream(e.to_string()));
            }
            if !self.body_sent {
                let left = self.req.head.content_length - self.body_in_buf as u64;
                stream_body(self.client, &mut upstream, left, &mut bufs.upstream).await?;
                self.body_sent = true;
            }
            match read_head(self.req, &mut upstream, bufs).await {
                Ok(head) => return Ok((upstream, head)),
                // A kept-alive connection found closed before any answer: the
                // same request goes out again on a fresh connection.
                Err(HeadError::Stale) if reused && self.replayable => continue,
                Err(HeadError::Stale) => {
                    return Err(Failure::Upstream(
                        "connection closed before an answer".into(),
                    ))
                }
                Err(HeadError::Failed(e)) => return Err(e),
            }
        }
    }
}

/// Writes two slices, in one system call when they are small.
async fn write_two(stream: &mut TcpStream, a: &[u8], b: &[u8]) -> std::io::Result<()> {
    if b.len() <= 16 * 1024 {
        let mut joined = Vec::with_capacity(a.len() + b.len());
        joined.extend_from_slice(a);
        joined.extend_from_slice(b);
        stream.write_all(&joined).await
    } else {
        stream.write_all(a).await?;
        stream.write_all(b).await
    }
}

/// Copies the rest of a request body (`left` bytes) from the client.
async fn stream_body(
    client: &mut ClientIo,
    upstream: &mut TcpStream,
    mut left: u64,
    scratch: &mut Vec<u8>,
) -> Result<(), Failure> {
    scratch.resize(RELAY_CHUNK, 0);
    while left > 0 {
        let want = (left as usize).min(RELAY_CHUNK);
        let n = match client.read(&mut scratch[..want]).await {
            Ok(0) => return Err(Failure::Client("the client closed mid-body".into())),
            Err(e) => return Err(Failure::Client(e.to_string())),
            Ok(n) => n,
        };
        upstream
            .write_all(&scratch[..n])
            .await
            .map_err(|e| Failure::Upstream(e.to_string()))?;
        left -= n as u64;
    }
    Ok(())
}

enum HeadError {
    /// Closed before a single byte of an answer.
    Stale,
    Failed(Failure),
}

impl From<Failure> for HeadError {
    fn from(f: Failure) -> Self {
        HeadError::Failed(f)
    }
}

/// Reads the backend's answer head, skipping interim (1xx) answers.
async fn read_head(
    req: &Request<'_>,
    upstream: &mut TcpStream,
    bufs: &mut Buffers,
) -> Result<ResponseHead, HeadError> {
    bufs.upstream.clear();
    let ctx = ResponseContext {
        head_request: req.head.method == Method::HEAD,
        request_id: req.head.request_id(&bufs.client),
        answer: req.answer,
        client_close: req.head.close,
    };
    loop {
        if !bufs.upstream.is_empty() {
            match parse_response(&bufs.upstream, &ctx, &mut bufs.head) {
                Ok(Parsed::Complete(head)) if head.status == 101 => {
                    return Err(Failure::Upstream("unexpected protocol switch".into()).into())
                }
                Ok(Parsed::Complete(head)) if (100..200).contains(&head.status) => {
                    bufs.upstream.drain(..head.head_len);
                    continue;
                }
                Ok(Parsed::Complete(head)) => return Ok(head),
                Ok(_) if bufs.upstream.len() > MAX_RESPONSE_HEAD => {
                    return Err(Failure::Upstream("answer head too large".into()).into())
                }
                Ok(_) => {}
                Err(e) => return Err(Failure::Upstream(format!("malformed answer: {e}")).into()),
            }
        }
        bufs.upstream.reserve(16 * 1024);
        match upstream.read_buf(&mut bufs.upstream).await {
            Ok(0) if bufs.upstream.is_empty() => return Err(HeadError::Stale),
            Ok(0) => return Err(Failure::Upstream("connection closed mid-answer".into()).into()),
            Ok(_) => {}
            Err(e) if bufs.upstream.is_empty() => {
                tracing::debug!(error = %e, "kept-alive connection failed");
                return Err(HeadError::Stale);
            }
            Err(e) => return Err(Failure::Upstream(e.to_string()).into()),
        }
    }
}

/// Relays the answer's head and body to the client; the connection goes back
/// to the pool when the body ended where its framing said.
async fn relay(
    client: &mut ClientIo,
    mut upstream: TcpStream,
    authority: &str,
    response: ResponseHead,
    bufs: &mut Buffers,
    answered: Instant,
) -> Flow {
    let mut framing = response.framing;
    let start = response.head_len;
    let (mut done, mut exact) = match framing.consume(&bufs.upstream[start..]) {
        Ok(Consumed::Done(n)) => {
            bufs.head
                .extend_from_slice(&bufs.upstream[start..start + n]);
            (true, start + n == bufs.upstream.len())
        }
        Ok(Consumed::More) => {
            bufs.head.extend_from_slice(&bufs.upstream[start..]);
            (false, true)
        }
        Err(_) => return Flow::Close,
    };
    // Servers that write the head and the body apart (uvicorn does) would
    // cost the client two writes and two wake-ups: a small body of known
    // length is awaited first, as nginx's `postpone_output` holds small
    // output. Streams (chunked, until close, large) go out as they come.
    while !done && matches!(framing, Framing::Length(left) if left <= SMALL_BODY) {
        bufs.upstream.clear();
        bufs.upstream.reserve(SMALL_BODY as usize);
        match upstream.read_buf(&mut bufs.upstream).await {
            Ok(n) if n > 0 => {}
            // Cut off: what came goes out, and the loop below closes.
            _ => break,
        }
        match framing.consume(&bufs.upstream) {
            Ok(Consumed::More) => bufs.head.extend_from_slice(&bufs.upstream),
            Ok(Consumed::Done(n)) => {
                bufs.head.extend_from_slice(&bufs.upstream[..n]);
                done = true;
                exact = n == bufs.upstream.len();
            }
            Err(_) => return Flow::Close,
        }
    }
    if client.write_all(&bufs.head).await.is_err() {
        return Flow::Close;
    }
    while !done {
        bufs.upstream.clear();
        bufs.upstream.reserve(RELAY_CHUNK);
        let n = match upstream.read_buf(&mut bufs.upstream).await {
            Ok(0) if framing == Framing::UntilClose => {
                done = true;
                exact = false;
                0
            }
            // Cut off mid-body: the client cannot be told otherwise.
            Ok(0) | Err(_) => return Flow::Close,
            Ok(_) => match framing.consume(&bufs.upstream) {
                Ok(Consumed::More) => bufs.upstream.len(),
                Ok(Consumed::Done(n)) => {
                    done = true;
                    exact = n == bufs.upstream.len();
                    n
                }
                Err(_) => return Flow::Close,
            },
        };
        if n > 0 && client.write_all(&bufs.upstream[..n]).await.is_err() {
            return Flow::Close;
        }
    }
    // TLS may hold the last records back until flushed.
    if client.flush().await.is_err() {
        return Flow::Close;
    }
    if response.upstream_keep_alive && exact {
        pool::put(authority, upstream, answered, response.keep_alive_timeout);
    }
    if response.close_client {
        Flow::Close
    } else {
        Flow::KeepAlive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_grown_by_a_large_exchange_shrink_back() {
        let mut bufs = Buffers::new();
        bufs.upstream.resize(RELAY_CHUNK * 2, 0);
        bufs.upstream.clear();
        bufs.client.extend_from_slice(b"GET / HTTP/1.1\r\n");
        bufs.shrink();
        assert!(bufs.upstream.capacity() <= super::super::request::KEEP_CAPACITY);
        assert_eq!(bufs.client, b"GET / HTTP/1.1\r\n", "contents are kept");
    }
}
