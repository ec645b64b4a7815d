//! The fast path: plain HTTP/1.1 proxied byte for byte.
//!
//! Most traffic through an API load balancer is keep-alive HTTP/1.1 with small
//! bodies. For it, this module reads the request head in place (httparse),
//! writes the forwarded head with the hop-by-hop headers swapped for the
//! forwarding ones, sends it on a keep-alive connection this thread owns, and
//! relays the answer's bytes back as they come, its head rewritten the same
//! way — no header map, no body boxing, no connection task or channel per
//! request. Profiling showed those costs kept the general path (hyper on both
//! sides) behind nginx and HAProxy.
//!
//! Everything else — HTTP/2, HTTP/1.0, upgrades, `Expect`, chunked request
//! bodies, the admin API — goes to the general path: the
//! connection, with the bytes already read, is handed to hyper
//! ([`Outcome::Fallback`]) and stays there. Bytes that are not HTTP at all
//! get a JSON 400 (`malformed_request`) and the connection is closed.
//!
//! # Layout
//! - [`head`]: reading and rewriting request and response heads.
//! - [`framing`]: where a body ends (length, chunked, close).
//! - [`exchange`]: one request: pick, send, relay, retry, errors.
//! - [`reply`]: the lb's own answers (JSON errors) and the access log.
//! - [`pool`]: per-thread idle connections to the backends.
//! - [`prefixed`]: replaying read bytes when hyper takes over.

mod exchange;
mod framing;
mod head;
mod pool;
mod prefixed;
#[cfg(test)]
mod props;
mod reply;
mod request;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;

use crate::edge::client_io::{ClientIo, READ_RESERVE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Sleep;

use crate::request::phases::{self, AnswerHeaders, RateLimited, Route};
use crate::request::rules::HeadRefusal;
use crate::request::rules::{self, REPLAY_MAX_BYTES};
use crate::state::Lb;
use exchange::{Buffers, Flow};
use head::{parse_request, HeadRules, Parsed, RequestHead};
pub(crate) use prefixed::Prefixed;
pub(crate) use reply::refuse_connection;

/// How a connection left the fast path.
pub(crate) enum Outcome {
    /// Closed (by either side, a timeout, or shutdown).
    Done,
    /// The general path takes the connection over, these bytes first.
    Fallback(Prefixed),
}

/// Serves a client connection's HTTP/1.1 requests until it closes, shutdown
/// begins while it is idle, or a request needs the general path.
pub(crate) async fn serve_connection(
    lb: &Lb,
    client: ClientIo,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let mut conn = Connection {
        lb,
        client,
        peer,
        // The `X-Forwarded-For` entry this connection adds, formatted once.
        peer_ip: peer.ip().to_string(),
        bufs: Buffers::new(),
        stop_sent: stop.clone(),
        // One wait for shutdown for the connection's life, polled whenever it
        // is idle: filed with the channel once, not once per request.
        stopping: Box::pin(async move {
            let _ = stop.wait_for(|s| *s).await;
        }),
        // One timer for the wait for each request head, one for each answer.
        head_timer: Box::pin(tokio::time::sleep(lb.config.header_read_timeout)),
        upstream_timer: Box::pin(tokio::time::sleep(lb.config.upstream_timeout)),
        draining: false,
    };
    loop {
        let mut head = match conn.read_head().await {
            Ok(head) => head,
            Err(End::Done) => return conn.close().await,
            Err(End::Fallback) => return conn.fallback(),
        };
        // Shutting down: this answer is the connection's last, and says so
        // (also when the stop came with the request's bytes and the wait
        // took the bytes first).
        head.close |= conn.stop_seen();
        // The admin API and redirects are hyper's to answer.
        let path = head.path(&conn.bufs.client);
        if phases::route(lb, path, conn.client.is_tls(), conn.peer.ip()) != Route::Backend {
            return conn.fallback();
        }
        // TLS and HTTP/2 to backends, and PROXY headers to them, are hyper's.
        if lb.config.send_proxy_protocol || !lb.backends.all_http1() {
            return conn.fallback();
        }
        if !conn.read_small_body(&head).await {
            return conn.close().await;
        }
        let body_in_buf =
            (conn.bufs.client.len() - head.head_len).min(head.content_length as usize);
        // Boxed: the exchange's state is the largest part of the
        // connection's, and an idle connection should not carry it.
        let span = head.span.take();
        if Box::pin(conn.exchange(&head, body_in_buf, span)).await == Flow::Close {
            return conn.close().await;
        }
        conn.bufs.client.drain(..head.head_len + body_in_buf);
        conn.bufs.shrink();
    }
}

/// How long a TLS client is given to take the close_notify alert.
const CLOSE_NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl Connection<'_> {
    /// Ends the connection. A TLS session says so first with close_notify,
    /// so that a client reading an answer delimited by the close (or any
    /// strict TLS client) sees a clean end rather than a truncation.
    async fn close(mut self) -> Outcome {
        if self.client.is_tls() {
            // Boxed: the wait would otherwise enlarge every connection's task.
            let notify = Box::pin(tokio::time::timeout(
                CLOSE_NOTIFY_WAIT,
                self.client.shutdown(),
            ));
            let _ = notify.await;
        }
        Outcome::Done
    }
}

/// Why no request head came.
enum End {
    /// Closed, timed out, malformed (answered), or shutting down.
    Done,
    /// The general path takes the connection over.
    Fallback,
}

/// A client connection on the fast path, between requests.
struct Connection<'l> {
    lb: &'l Lb,
    client: ClientIo,
    peer: SocketAddr,
    peer_ip: String,
    bufs: Buffers,
    stopping: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The same signal, read without waiting: whether it has been sent.
    stop_sent: watch::Receiver<bool>,
    head_timer: Pin<Box<Sleep>>,
    upstream_timer: Pin<Box<Sleep>>,
    /// Shutdown began: one more request is awaited, briefly, then the
    /// connection closes.
    draining: bool,
}

/// How long a connection idle when shutdown begins waits for one last
/// request. Closing it at once races a request already on its way (the
/// client sees a reset); answering that request with `Connection: close`
/// lets keep-alive clients move to the process taking over.
const DRAIN_LAST_REQUEST: std::time::Duration = std::time::Duration::from_secs(1);

impl Connection<'_> {
    /// Whether shutdown has begun, noticing it if it has come since the
    /// connection last waited.
    fn stop_seen(&mut self) -> bool {
        // An atomic load of the channel's version: polling `stopping` here
        // would take the channel's waiter lock, shared by every connection,
        // once per request. The only value ever sent is the stop; a closed
        // channel means the accept loop is gone.
        self.draining = self.draining || self.stop_sent.has_changed().unwrap_or(true);
        self.draining
    }

    /// Reads and parses the next request head, within one deadline for the
    /// wait and the head (slowloris; idle keep-alive).
    async fn read_head(&mut self) -> Result<RequestHead, End> {
        let config = &self.lb.config;
        let limits = HeadRules {
            max_headers: config.max_headers,
            max_url: config.max_url_bytes,
            tls: self.client.is_tls(),
            trace: weir_trace::tracer().is_exporting(),
        };
        // Once shutdown begins, the wait for a last request is shorter.
        let last = DRAIN_LAST_REQUEST.min(config.header_read_timeout);
        let timeout = match self.draining {
            true => last,
            false => config.header_read_timeout,
        };
        exchange::arm(&mut self.head_timer, Instant::now(), timeout);
        loop {
            let bufs = &mut self.bufs;
            if !bufs.client.is_empty() {
                // The hash key may be switched at runtime, with the strategy.
                // Loaded here, not held across the wait: arc-swap gives each
                // thread a few cheap loads in flight, and a thread's idle
                // connections holding them would push every other load on
                // it to the slow path (an Arc count shared by the cores).
                let active = self.lb.strategy.load();
                match parse_request(
                    &bufs.client,
                    limits,
                    self.peer_ip.as_bytes(),
                    active.hash_header(),
                    rules::next_request_id_bytes,
                    &mut bufs.head,
                ) {
                    // A head read whole in one go is held to the limit too.
                    Parsed::Complete(head) if head.head_len > config.max_head_bytes => {
                        reply::refuse_head(&mut self.client, bufs, HeadRefusal::HEAD_TOO_LARGE)
                            .await;
                        return Err(End::Done);
                    }
                    Parsed::Complete(head) => return Ok(head),
                    Parsed::Partial if bufs.client.len() < config.max_head_bytes => {}
                    Parsed::Partial => {
                        reply::refuse_head(&mut self.client, bufs, HeadRefusal::HEAD_TOO_LARGE)
                            .await;
                        return Err(End::Done);
                    }
                    Parsed::Fallback => return Err(End::Fallback),
                    Parsed::Malformed(why) => {
                        reply::refuse_malformed(&mut self.client, bufs, why).await;
                        return Err(End::Done);
                    }
                    Parsed::Refused(refusal) => {
                        reply::refuse_head(&mut self.client, bufs, refusal).await;
                        return Err(End::Done);
                    }
                }
            }
            let read = if bufs.client.is_empty() {
                // Waiting for the next request holds no buffer.
                tokio::select! {
                    biased;
                    read = self.client.read_when_ready(&mut bufs.client) => read,
                    () = self.head_timer.as_mut() => return Err(End::Done),
                    () = self.stopping.as_mut(), if !self.draining => {
                        self.draining = true;
                        exchange::arm(&mut self.head_timer, Instant::now(), last);
                        continue;
                    }
                }
            } else {
                // The rest of a head begun.
                bufs.client.reserve(READ_RESERVE);
                tokio::select! {
                    biased;
                    read = self.client.read_buf(&mut bufs.client) => read,
                    () = self.head_timer.as_mut() => return Err(End::Done),
                }
            };
            match read {
                Ok(n) if n > 0 => {}
                _ => return Err(End::Done),
            }
        }
    }

    /// Reads a small body whole, so it can be sent again elsewhere; false
    /// when the client went away.
    async fn read_small_body(&mut self, head: &RequestHead) -> bool {
        if head.content_length > REPLAY_MAX_BYTES {
            return true;
        }
        let total = head.head_len + head.content_length as usize;
        let bufs = &mut self.bufs;
        while bufs.client.len() < total {
            bufs.client.reserve(total - bufs.client.len());
            match self.client.read_buf(&mut bufs.client).await {
                Ok(n) if n > 0 => {}
                _ => return false,
            }
        }
        true
    }

    /// One request past its head: the rate limit's verdict, then the
    /// exchange with a backend or the 429; its span ends with the answer.
    async fn exchange(
        &mut self,
        head: &RequestHead,
        body_in_buf: usize,
        span: Option<weir_trace::Span>,
    ) -> Flow {
        let (flow, status) = self.answer(head, body_in_buf).await;
        if let Some(span) = span {
            let path = head.path(&self.bufs.client);
            phases::trace_end(span, &head.method, path, status);
        }
        flow
    }

    /// The rate limit's verdict, then the exchange: how the connection goes
    /// on, and the answer's status.
    async fn answer(&mut self, head: &RequestHead, body_in_buf: usize) -> (Flow, u16) {
        let lb = self.lb;
        let client_ip = {
            let forwarded = head
                .forwarded_for
                .as_ref()
                .and_then(|r| std::str::from_utf8(&self.bufs.client[r.clone()]).ok());
            lb.rate_limits
                .client_ip_from(self.peer.ip(), forwarded.into_iter())
        };
        let path = head.path(&self.bufs.client);
        let tls = self.client.is_tls();
        let rate_limit = match phases::admit(lb, client_ip, &head.method, path).await {
            Ok(rate_limit) => rate_limit,
            Err(limited) => {
                // An unread body would be taken for the next request.
                let close = head.close || body_in_buf as u64 != head.content_length;
                let answer = AnswerHeaders::new(lb, tls, Some(&limited.headers));
                let refusal = (RateLimited::STATUS, RateLimited::CODE, limited.message());
                let flow = reply::refuse_limited(
                    &mut self.client,
                    &mut self.bufs,
                    head,
                    refusal,
                    answer,
                    close,
                )
                .await;
                return (flow, RateLimited::STATUS.as_u16());
            }
        };
        let req = exchange::Request {
            lb,
            peer: self.peer,
            head,
            answer: AnswerHeaders::new(lb, tls, rate_limit.as_ref()),
        };
        exchange::forward(
            req,
            &mut self.client,
            &mut self.bufs,
            &mut self.upstream_timer,
        )
        .await
    }

    /// Hands the connection, with the bytes read so far, to the general path.
    fn fallback(self) -> Outcome {
        Outcome::Fallback(Prefixed::new(self.bufs.client, self.client))
    }
}
