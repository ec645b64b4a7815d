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
mod reply;
mod request;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::ratelimit::Verdict;
use crate::rules::{self, REPLAY_MAX_BYTES};
use crate::state::Lb;
use exchange::{Buffers, Flow};
use head::{parse_request, Parsed};
pub(crate) use prefixed::Prefixed;

/// A request head larger than this goes to the general path (which answers
/// 431 past its own limit).
const MAX_HEAD: usize = 16 * 1024;

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
    mut client: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let mut bufs = Buffers::new();
    // One wait for shutdown for the connection's life, polled whenever it is
    // idle: filed with the channel once, not once per request.
    let mut stopping = Box::pin(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    // One timer for the wait for each request head, one for each answer.
    let mut head_timer = Box::pin(tokio::time::sleep(lb.config.header_read_timeout));
    let mut upstream_timer = Box::pin(tokio::time::sleep(lb.config.upstream_timeout));
    // The `X-Forwarded-For` entry this connection adds, formatted once.
    let peer_ip = peer.ip().to_string();
    loop {
        // The hash key may be switched at runtime, with the strategy.
        let active = lb.strategy.load();
        let hash_header = active.hash_header();
        // One deadline for the wait and the head (slowloris; idle keep-alive).
        exchange::arm(
            &mut head_timer,
            Instant::now(),
            lb.config.header_read_timeout,
        );
        let head = loop {
            if !bufs.client.is_empty() {
                match parse_request(
                    &bufs.client,
                    peer_ip.as_bytes(),
                    hash_header,
                    rules::next_request_id_bytes,
                    &mut bufs.head,
                ) {
                    Parsed::Complete(head) => break head,
                    Parsed::Partial if bufs.client.len() < MAX_HEAD => {}
                    Parsed::Partial | Parsed::Fallback => return fallback(bufs, client),
                    Parsed::Malformed(why) => {
                        reply::refuse_malformed(&mut client, &mut bufs, why).await;
                        return Outcome::Done;
                    }
                }
            }
            bufs.client.reserve(4096);
            let idle = bufs.client.is_empty();
            let read = tokio::select! {
                biased;
                read = client.read_buf(&mut bufs.client) => read,
                () = head_timer.as_mut() => return Outcome::Done,
                () = stopping.as_mut(), if idle => return Outcome::Done,
            };
            match read {
                Ok(n) if n > 0 => {}
                _ => return Outcome::Done,
            }
        };
        let path = head.path(&bufs.client);
        if lb.config.admin_on_main
            && (path == "/lb" || path.starts_with("/lb/") || path == "/dashboard")
        {
            return fallback(bufs, client);
        }
        // A small body is read whole, so it can be sent again elsewhere.
        if head.content_length <= REPLAY_MAX_BYTES {
            let total = head.head_len + head.content_length as usize;
            while bufs.client.len() < total {
                bufs.client.reserve(total - bufs.client.len());
                match client.read_buf(&mut bufs.client).await {
                    Ok(n) if n > 0 => {}
                    _ => return Outcome::Done,
                }
            }
        }
        let body_in_buf = (bufs.client.len() - head.head_len).min(head.content_length as usize);
        let whole_body = body_in_buf as u64 == head.content_length;

        let client_ip = {
            let forwarded = head
                .forwarded_for
                .as_ref()
                .and_then(|r| std::str::from_utf8(&bufs.client[r.clone()]).ok());
            lb.rate_limits
                .client_ip_from(peer.ip(), forwarded.into_iter())
        };
        let path = head.path(&bufs.client);
        let verdict = match &lb.shared_limits {
            Some(shared) => {
                lb.rate_limits
                    .check_shared(shared, client_ip, &head.method, path)
                    .await
            }
            None => lb.rate_limits.check(client_ip, &head.method, path),
        };
        let flow = match verdict {
            Verdict::Limited {
                retry_after,
                headers,
            } => {
                lb.rejected_rate_limit.fetch_add(1, Ordering::Relaxed);
                // An unread body would be taken for the next request.
                let close = head.close || !whole_body;
                let limited = reply::Limited {
                    client: client_ip,
                    retry_after,
                    headers: &headers,
                    close,
                };
                reply::refuse_limited(&mut client, &mut bufs, &head, limited).await
            }
            Verdict::Unlimited | Verdict::Allowed(_) => {
                let extra = match &verdict {
                    Verdict::Allowed(headers) => Some(headers),
                    _ => None,
                };
                let req = exchange::Request {
                    lb,
                    peer,
                    head: &head,
                    extra,
                };
                exchange::forward(req, &mut client, &mut bufs, &mut upstream_timer).await
            }
        };
        if flow == Flow::Close {
            return Outcome::Done;
        }
        bufs.client.drain(..head.head_len + body_in_buf);
        bufs.shrink();
    }
}

fn fallback(bufs: Buffers, client: TcpStream) -> Outcome {
    Outcome::Fallback(Prefixed::new(bufs.client, client))
}
