//! HTTP's rules as the lb applies them on both paths (the fast HTTP/1.1
//! path and the hyper path): hop-by-hop headers, which requests may be sent
//! again, request ids, `X-Forwarded-For`, and weir's JSON error shape.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::body::Body;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};

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

pub(crate) const REQUEST_ID: &str = "x-request-id";

/// A fresh request id as a header value.
pub(crate) fn next_request_id() -> HeaderValue {
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

/// Why a request head is refused before it reaches a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadRefusal {
    pub status: http::StatusCode,
    pub code: &'static str,
    pub message: &'static str,
}

impl HeadRefusal {
    pub(crate) const TOO_MANY_HEADERS: HeadRefusal = HeadRefusal {
        status: http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        code: "too_many_headers",
        message: "the request has more header lines than --max-headers allows",
    };
    pub(crate) const HEAD_TOO_LARGE: HeadRefusal = HeadRefusal {
        status: http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        code: "head_too_large",
        message: "the request head is larger than --max-head-bytes allows",
    };
    pub(crate) const URL_TOO_LONG: HeadRefusal = HeadRefusal {
        status: http::StatusCode::URI_TOO_LONG,
        code: "url_too_long",
        message: "the request target is longer than --max-url-bytes allows",
    };
    pub(crate) const AMBIGUOUS_LENGTH: HeadRefusal = HeadRefusal {
        status: http::StatusCode::BAD_REQUEST,
        code: "ambiguous_framing",
        message: "the request's body length is ambiguous: one Content-Length of digits, or Transfer-Encoding: chunked alone",
    };
    pub(crate) const UNSUPPORTED_CODING: HeadRefusal = HeadRefusal {
        status: http::StatusCode::BAD_REQUEST,
        code: "unsupported_transfer_coding",
        message: "the only transfer coding accepted is a single Transfer-Encoding: chunked",
    };
    pub(crate) const TOO_MANY_CONNECTIONS: HeadRefusal = HeadRefusal {
        status: http::StatusCode::TOO_MANY_REQUESTS,
        code: "too_many_connections",
        message: "this client IP holds as many connections as --max-connections-per-ip allows",
    };
    pub(crate) const PROXY_HEADER_REQUIRED: HeadRefusal = HeadRefusal {
        status: http::StatusCode::BAD_REQUEST,
        code: "proxy_header_required",
        message: "this listener takes connections from a balancer that sends a PROXY protocol header first (--proxy-protocol)",
    };
    pub(crate) const MISSING_HOST: HeadRefusal = HeadRefusal {
        status: http::StatusCode::BAD_REQUEST,
        code: "missing_host",
        message: "an HTTP/1.1 request must carry exactly one Host header (RFC 9112 section 3.2)",
    };
}

impl HeadRefusal {
    /// The refusal as a JSON error response (the general path); the
    /// connection closes after it, as its body's end is unknown.
    pub(crate) fn into_response(self) -> Response<Body> {
        let mut resp = json_error(self.status, self.code, self.message);
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }
}

/// The checks the fast path makes while parsing, made on a request hyper
/// parsed: one `Host` for HTTP/1.1, the target's length, one unambiguous
/// body framing.
pub(crate) fn check_request_head(
    req: &http::Request<impl Sized>,
    max_url: usize,
) -> Result<(), HeadRefusal> {
    let headers = req.headers();
    let version = req.version();
    let http1 = version == http::Version::HTTP_11 || version == http::Version::HTTP_10;
    let hosts = headers.get_all(header::HOST).iter().count();
    if hosts > 1 || (version == http::Version::HTTP_11 && hosts == 0) {
        return Err(HeadRefusal::MISSING_HOST);
    }
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > max_url {
        return Err(HeadRefusal::URL_TOO_LONG);
    }
    if !http1 {
        return Ok(());
    }
    let lengths = headers.get_all(header::CONTENT_LENGTH).iter().count();
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    match (codings.next(), codings.next()) {
        (None, _) if lengths > 1 => Err(HeadRefusal::AMBIGUOUS_LENGTH),
        (None, _) => Ok(()),
        (Some(_), _) if lengths > 0 => Err(HeadRefusal::AMBIGUOUS_LENGTH),
        (Some(te), None)
            if version == http::Version::HTTP_11
                && te.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") =>
        {
            Ok(())
        }
        // HTTP/1.0 has no chunked coding (RFC 9112 section 6.1).
        _ => Err(HeadRefusal::UNSUPPORTED_CODING),
    }
}

/// Whether a path belongs to the lb's own admin API (when it is served on
/// the main listener).
pub(crate) fn is_admin_path(path: &str) -> bool {
    path == "/lb"
        || path.starts_with("/lb/")
        || path == "/dashboard"
        || path.starts_with("/dashboard/")
}

/// The admin paths every client may reach however the admin surface is
/// guarded: the lb's health, for the probes and balancers in front.
pub(crate) fn is_health_path(path: &str) -> bool {
    path.starts_with("/lb/health/")
}

/// Bodies up to this size are kept to be replayed on another backend.
pub(crate) const REPLAY_MAX_BYTES: u64 = 64 * 1024;

/// Whether a request's body may be kept for a replay: a safe or idempotent
/// method (RFC 9110 §9.2.2) or an Idempotency-Key, and a declared length
/// small enough to hold.
pub(crate) fn may_replay(parts: &http::request::Parts) -> bool {
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

pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        remove_connection_named(headers);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The protocol an HTTP/1.1 request asks to switch to: its `Upgrade`
/// header, when `Connection` names `upgrade` (RFC 9110 §7.8).
pub(crate) fn upgrade_wanted(req: &http::Request<hyper::body::Incoming>) -> Option<HeaderValue> {
    if req.version() != http::Version::HTTP_11 {
        return None;
    }
    let protocol = req.headers().get(header::UPGRADE)?;
    req.headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
        .then(|| protocol.clone())
}

/// Puts back the two headers an upgrade travels in, after the hop-by-hop
/// ones were stripped.
pub(crate) fn keep_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::UPGRADE, protocol);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
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

pub(crate) fn append_forwarded_for(headers: &mut HeaderMap, peer: SocketAddr) {
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
