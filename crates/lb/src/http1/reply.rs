//! Answers the lb gives itself on the fast path: JSON errors (as
//! [`crate::request::rules::json_error`] makes them) and the access log line.

use std::io::Write as _;
use std::time::Instant;

use crate::edge::client_io::ClientIo;
use http::{HeaderValue, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::head::RequestHead;
use super::request::{Buffers, Flow, Request};
use crate::request::attempt::Refusal;
use crate::request::phases::AnswerHeaders;
use crate::request::rules::{self, HeadRefusal};

/// Answers bytes that are not HTTP with a JSON 400; the caller closes.
pub(super) async fn refuse_malformed(client: &mut ClientIo, bufs: &mut Buffers, why: &str) {
    let message = format!("not a valid HTTP/1.1 request: {why}");
    let refusal = (
        StatusCode::BAD_REQUEST,
        "malformed_request",
        message.as_str(),
    );
    refuse_and_close(client, &mut bufs.head, refusal).await;
}

/// Answers a refused request head with its JSON error; the caller closes.
pub(super) async fn refuse_head(client: &mut ClientIo, bufs: &mut Buffers, refusal: HeadRefusal) {
    let refusal = (refusal.status, refusal.code, refusal.message);
    refuse_and_close(client, &mut bufs.head, refusal).await;
}

/// Refuses a connection before reading from it (`--max-connections-per-ip`).
pub(crate) async fn refuse_connection(mut client: ClientIo, refusal: HeadRefusal) {
    let mut out = Vec::with_capacity(512);
    let refusal = (refusal.status, refusal.code, refusal.message);
    refuse_and_close(&mut client, &mut out, refusal).await;
}

/// Writes a JSON error (status, code, message) with `connection: close`
/// into `out`, sends it, and closes lingering.
async fn refuse_and_close(
    client: &mut ClientIo,
    out: &mut Vec<u8>,
    (status, code, message): (StatusCode, &str, &str),
) {
    let id = rules::next_request_id_bytes();
    let nothing_added = AnswerHeaders {
        rate_limit: None,
        edge: &[],
    };
    write_json_error(out, (status, code, message), &id, None, nothing_added, true);
    if send_all(client, out).await.is_ok() {
        linger_close(client).await;
    }
}

/// Closes after a refusal the way nginx's lingering close does: the write
/// side first, then what the client still sends is read and dropped for a
/// moment, so closing with unread bytes does not reset the connection
/// before the client has read the answer.
async fn linger_close(client: &mut ClientIo) {
    const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
    const MAX_DRAINED: usize = 1024 * 1024;
    if client.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut drained = 0;
        // On the heap: an array here would make every connection's task
        // that much larger, refused or not.
        let mut scratch = vec![0u8; 4096];
        while drained < MAX_DRAINED {
            match client.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Answers 429 for a request over its client's rate limit, with the
/// limiter's headers and a JSON body.
pub(super) async fn refuse_limited(
    client: &mut ClientIo,
    bufs: &mut Buffers,
    head: &RequestHead,
    (status, code, message): (StatusCode, &str, String),
    answer: AnswerHeaders<'_>,
    close: bool,
) -> Flow {
    let request_id = head.request_id(&bufs.client);
    let refusal = (status, code, message.as_str());
    write_json_error(&mut bufs.head, refusal, request_id, None, answer, close);
    match send_all(client, &bufs.head).await {
        Ok(()) if !close => Flow::KeepAlive,
        _ => Flow::Close,
    }
}

/// The status of the head written last into `head` (for the access log).
pub(super) fn response_status(head: &[u8]) -> u16 {
    head.get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok()?.parse().ok())
        .unwrap_or(0)
}

/// Writes the lb's own answer to a request; with `close`, the connection
/// closes after it (the request's body was not wholly read).
pub(super) async fn respond_error(
    req: &Request<'_>,
    client: &mut ClientIo,
    bufs: &mut Buffers,
    refusal: Refusal,
    close: bool,
    started: Instant,
) -> (Flow, u16) {
    let (status, code, message) = refusal.describe();
    let close = close || req.head.close;
    write_json_error(
        &mut bufs.head,
        (status, code, message),
        req.head.request_id(&bufs.client),
        refusal.retry_after(),
        req.answer,
        close,
    );
    let flow = match send_all(client, &bufs.head).await {
        Ok(()) if !close => Flow::KeepAlive,
        _ => Flow::Close,
    };
    access_log(req, bufs, status.as_u16(), started);
    (flow, status.as_u16())
}

/// `{"error":{"code","message"}}` as a whole HTTP/1.1 answer in `out`, with
/// a `Retry-After` if given and what the lb adds to its answers.
pub(crate) fn write_json_error(
    out: &mut Vec<u8>,
    (status, code, message): (StatusCode, &str, &str),
    request_id: &[u8],
    retry_after: Option<HeaderValue>,
    answer: AnswerHeaders<'_>,
    close: bool,
) {
    let body = rules::json_error_body(code, message);
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    let mut header = |name: &[u8], value: &[u8]| {
        for part in [name, b": ", value, b"\r\n"] {
            out.extend_from_slice(part);
        }
    };
    header(b"x-request-id", request_id);
    if let Some(retry_after) = retry_after {
        header(b"retry-after", retry_after.as_bytes());
    }
    for (name, value) in answer.rate_limit.into_iter().flatten() {
        header(name.as_str().as_bytes(), value.as_bytes());
    }
    // The lb's own answer has none of the edge's headers yet.
    for (name, value) in answer.edge {
        header(name.as_str().as_bytes(), value.as_bytes());
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
}

pub(super) fn access_log(req: &Request<'_>, bufs: &Buffers, status: u16, started: Instant) {
    if !req.lb.config.access_log {
        return;
    }
    tracing::info!(
        target: "weir_lb::access",
        client = %req.peer.ip(),
        method = %req.head.method,
        path = req.head.path(&bufs.client),
        status,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        request_id = std::str::from_utf8(req.head.request_id(&bufs.client)).unwrap_or("-"),
        "request"
    );
}

/// Writes `bytes` and flushes them (TLS may hold records back otherwise).
async fn send_all(client: &mut ClientIo, bytes: &[u8]) -> std::io::Result<()> {
    client.write_all(bytes).await?;
    client.flush().await
}
