//! Reading HTTP/1.1 request and response heads (httparse, no allocation) and
//! writing the forwarded heads: hop-by-hop headers dropped (RFC 9110 §7.6.1),
//! `X-Forwarded-For`/`-Proto` and `X-Request-Id` added, every other header
//! copied byte for byte.

use std::ops::Range;
use std::time::Duration;

use http::{HeaderName, Method};

use super::framing::{ChunkedDecoder, Framing};
use crate::request::phases::AnswerHeaders;
use crate::request::rules::HeadRefusal;

/// Most headers a head may have on the fast path; a request with more is
/// refused when `--max-headers` is no larger, else the general path takes it.
const MAX_HEADERS: usize = 100;
/// Most `Connection`-named headers dropped on the fast path.
const MAX_CONNECTION_NAMES: usize = 8;
/// A client's request id longer than this is replaced.
const MAX_REQUEST_ID: usize = 128;

/// What reading a head gave.
pub(crate) enum Parsed<T> {
    Complete(T),
    /// More bytes needed.
    Partial,
    /// Not for the fast path (HTTP/2, HTTP/1.0, upgrades, `Expect`, chunked
    /// or ambiguous request bodies…): the general path takes the connection
    /// over and answers it.
    Fallback,
    /// Not HTTP at all: answered with a JSON 400, then closed.
    Malformed(&'static str),
    /// HTTP, but refused (a limit, a missing `Host`): answered with this JSON
    /// error, then closed.
    Refused(HeadRefusal),
}

/// The limits a request head is held to, and what its rewrite says of the
/// connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadRules {
    pub max_headers: usize,
    pub max_url: usize,
    /// The client came over TLS: `X-Forwarded-Proto: https`.
    pub tls: bool,
    /// The lb exports spans: the request's `traceparent` is its own span's.
    pub trace: bool,
}

/// The request id a forwarded request carries.
pub(crate) enum RequestId {
    /// The client's own, at this range of its buffer.
    Client(Range<usize>),
    Fresh([u8; 32]),
}

/// A request head the fast path forwards. Ranges index the client's buffer.
pub(crate) struct RequestHead {
    pub head_len: usize,
    pub method: Method,
    /// Path and query.
    pub target: Range<usize>,
    pub content_length: u64,
    /// The client asked to close after this exchange.
    pub close: bool,
    pub idempotency_key: bool,
    pub request_id: RequestId,
    /// The value of the `consistent_hash` header, when configured and sent.
    pub hash_value: Option<Range<usize>>,
    /// The client's `X-Forwarded-For` (one header at most on the fast path).
    pub forwarded_for: Option<Range<usize>>,
    /// The lb's span of this request, when it exports spans.
    pub span: Option<weir_trace::Span>,
}

impl RequestHead {
    /// The path without the query.
    pub(crate) fn path<'a>(&self, buf: &'a [u8]) -> &'a str {
        let target = &buf[self.target.clone()];
        let path = target.split(|b| *b == b'?').next().unwrap_or(target);
        // httparse admits only visible ASCII in the target.
        std::str::from_utf8(path).unwrap_or("/")
    }

    pub(crate) fn request_id<'a>(&'a self, buf: &'a [u8]) -> &'a [u8] {
        match &self.request_id {
            RequestId::Client(r) => &buf[r.clone()],
            RequestId::Fresh(id) => id,
        }
    }
}

fn offset(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// The headers the fast path acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Never forwarded (RFC 9110 §7.6.1).
    HopByHop,
    /// Requests with these take the general path.
    Upgrade,
    Expect,
    TransferEncoding,
    ContentLength,
    Host,
    XForwardedFor,
    XForwardedProto,
    XRequestId,
    IdempotencyKey,
    RetryAfter,
    XWeirNode,
    TraceParent,
    TraceState,
    Other,
}

/// Classifies a header name by its length first, so most names cost one
/// comparison at most (every header of every message passes here).
fn classify(name: &str) -> Known {
    let is = |known: &str| name.eq_ignore_ascii_case(known);
    match name.len() {
        2 if is("te") => Known::HopByHop,
        4 if is("host") => Known::Host,
        6 if is("expect") => Known::Expect,
        7 if is("upgrade") => Known::Upgrade,
        7 if is("trailer") => Known::HopByHop,
        10 if is("connection") || is("keep-alive") => Known::HopByHop,
        10 if is("tracestate") => Known::TraceState,
        11 if is("retry-after") => Known::RetryAfter,
        11 if is("x-weir-node") => Known::XWeirNode,
        11 if is("traceparent") => Known::TraceParent,
        12 if is("x-request-id") => Known::XRequestId,
        14 if is("content-length") => Known::ContentLength,
        15 if is("x-forwarded-for") => Known::XForwardedFor,
        15 if is("idempotency-key") => Known::IdempotencyKey,
        16 if is("proxy-connection") => Known::HopByHop,
        17 if is("x-forwarded-proto") => Known::XForwardedProto,
        17 if is("transfer-encoding") => Known::TransferEncoding,
        _ => Known::Other,
    }
}

/// The `Connection` header's tokens: `close` seen, and the names it lists.
struct ConnectionTokens<'a> {
    close: bool,
    keep_alive: bool,
    names: [&'a [u8]; MAX_CONNECTION_NAMES],
    count: usize,
}

impl<'a> ConnectionTokens<'a> {
    /// `None` when it names more headers than the fast path drops.
    fn read(headers: &[httparse::Header<'a>]) -> Option<Self> {
        let mut tokens = ConnectionTokens {
            close: false,
            keep_alive: false,
            names: [&[]; MAX_CONNECTION_NAMES],
            count: 0,
        };
        for h in headers
            .iter()
            .filter(|h| h.name.len() == 10 && h.name.eq_ignore_ascii_case("connection"))
        {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    tokens.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    tokens.keep_alive = true;
                } else if !token.is_empty() {
                    *tokens.names.get_mut(tokens.count)? = token;
                    tokens.count += 1;
                }
            }
        }
        Some(tokens)
    }

    fn names(&self, name: &str) -> bool {
        self.count > 0
            && self.names[..self.count]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }
}

fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Copies kept header lines as they stand in the head being read: whole
/// lines, and a run of adjacent kept lines in one copy.
struct Lines<'a> {
    buf: &'a [u8],
    run: Range<usize>,
}

impl<'a> Lines<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Lines { buf, run: 0..0 }
    }

    fn keep(&mut self, out: &mut Vec<u8>, h: &httparse::Header<'_>) {
        match self.line_of(h) {
            Some(line) if !self.run.is_empty() && self.run.end == line.start => {
                self.run.end = line.end;
            }
            Some(line) => {
                self.flush(out);
                self.run = line;
            }
            // A bare LF ending or the like: written out afresh, with CRLF.
            None => {
                self.flush(out);
                write_header(out, h.name.as_bytes(), h.value);
            }
        }
    }

    /// The header's whole line, when it ends in CRLF right after its value
    /// (and any trailing blanks).
    fn line_of(&self, h: &httparse::Header<'_>) -> Option<Range<usize>> {
        let base = self.buf.as_ptr() as usize;
        let start = (h.name.as_ptr() as usize).checked_sub(base)?;
        let value_end = (h.value.as_ptr() as usize).checked_sub(base)? + h.value.len();
        if value_end > self.buf.len() || start >= value_end {
            return None;
        }
        let rest = &self.buf[value_end..];
        let lf = rest.iter().position(|b| *b == b'\n')?;
        let blanks_then_cr = lf >= 1
            && rest[lf - 1] == b'\r'
            && rest[..lf - 1].iter().all(|b| *b == b' ' || *b == b'\t');
        blanks_then_cr.then_some(start..value_end + lf + 1)
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        if !self.run.is_empty() {
            out.extend_from_slice(&self.buf[self.run.clone()]);
            self.run = 0..0;
        }
    }
}

/// Reads a request head from `buf` and writes the head to forward into `out`.
pub(crate) fn parse_request(
    buf: &[u8],
    limits: HeadRules,
    peer: &[u8],
    hash_header: Option<&HeaderName>,
    fresh_id: impl FnOnce() -> [u8; 32],
    out: &mut Vec<u8>,
) -> Parsed<RequestHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        // Another HTTP version (the HTTP/2 preface): hyper's to judge.
        Err(httparse::Error::Version) => return Parsed::Fallback,
        Err(httparse::Error::TooManyHeaders) if limits.max_headers <= MAX_HEADERS => {
            return Parsed::Refused(HeadRefusal::TOO_MANY_HEADERS)
        }
        Err(httparse::Error::TooManyHeaders) => return Parsed::Fallback,
        Err(httparse::Error::Token) => {
            return Parsed::Malformed("invalid method or request target")
        }
        Err(httparse::Error::HeaderName) => return Parsed::Malformed("invalid header name"),
        Err(httparse::Error::HeaderValue) => return Parsed::Malformed("invalid header value"),
        Err(_) => return Parsed::Malformed("invalid request line or line ending"),
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Fallback;
    };
    if req.headers.len() > limits.max_headers {
        return Parsed::Refused(HeadRefusal::TOO_MANY_HEADERS);
    }
    if target.len() > limits.max_url {
        return Parsed::Refused(HeadRefusal::URL_TOO_LONG);
    }
    // Absolute-form and asterisk-form targets take the general path.
    if !target.starts_with('/') {
        return Parsed::Fallback;
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Fallback;
    };
    let Some(connection) = ConnectionTokens::read(req.headers) else {
        return Parsed::Fallback;
    };
    let mut head = RequestHead {
        head_len,
        method,
        target: offset(buf, target.as_bytes()),
        content_length: 0,
        close: connection.close,
        idempotency_key: false,
        request_id: RequestId::Fresh([0; 32]),
        hash_value: None,
        forwarded_for: None,
        span: None,
    };
    // The client's trace context, read when the lb starts a span of its own.
    let mut traceparent: Option<&[u8]> = None;
    let mut tracestate: Option<&[u8]> = None;
    let mut has_id = false;
    let mut has_host = false;
    let mut has_length = false;
    out.clear();
    // Once, for the head and the few lines the lb adds: growing from empty
    // (the buffer goes back between requests) took ~7 reallocations.
    out.reserve(head_len + 256);
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut lines = Lines::new(buf);
    // Requests the general path takes, once every header has been checked.
    let mut general = false;
    let mut chunked = Chunked::Absent;
    for h in req.headers.iter() {
        let name = h.name;
        let known = classify(name);
        match known {
            Known::TransferEncoding => {
                chunked = chunked.and(h.value);
                continue;
            }
            Known::Expect | Known::Upgrade => {
                general = true;
                continue;
            }
            Known::HopByHop => continue,
            _ if connection.names(name) => continue,
            Known::ContentLength => {
                // Two lengths, even equal ones, are refused: a peer that
                // reads the other one would see another message.
                if has_length {
                    return Parsed::Refused(HeadRefusal::AMBIGUOUS_LENGTH);
                }
                has_length = true;
                match std::str::from_utf8(h.value).ok().and_then(parse_length) {
                    Some(n) => head.content_length = n,
                    None => return Parsed::Refused(HeadRefusal::AMBIGUOUS_LENGTH),
                }
            }
            Known::Host if has_host => return Parsed::Refused(HeadRefusal::MISSING_HOST),
            Known::Host => has_host = true,
            Known::XForwardedFor => {
                if head.forwarded_for.is_some() {
                    return Parsed::Fallback;
                }
                head.forwarded_for = Some(offset(buf, h.value));
                continue;
            }
            Known::XForwardedProto => continue,
            Known::XRequestId => {
                if has_id || h.value.is_empty() || h.value.len() > MAX_REQUEST_ID {
                    // Replaced by a fresh one below.
                    continue;
                }
                has_id = true;
                head.request_id = RequestId::Client(offset(buf, h.value));
            }
            Known::IdempotencyKey => head.idempotency_key = true,
            // Replaced by the lb's span's below; two make neither valid.
            Known::TraceParent if limits.trace => {
                traceparent = match traceparent {
                    None => Some(h.value),
                    Some(_) => Some(b""),
                };
                continue;
            }
            Known::TraceState if limits.trace => tracestate = Some(h.value),
            _ => {}
        }
        if let Some(hash) = hash_header {
            if head.hash_value.is_none() && name.eq_ignore_ascii_case(hash.as_str()) {
                head.hash_value = Some(offset(buf, h.value));
            }
        }
        lines.keep(out, h);
    }
    lines.flush(out);
    if !has_host {
        return Parsed::Refused(HeadRefusal::MISSING_HOST);
    }
    match chunked {
        Chunked::Absent => {}
        // Both framings (RFC 9112 section 6.1: the length must not be
        // forwarded), or a coding other than exactly `chunked`: no reading
        // of the body is safe to pass on.
        Chunked::Yes if has_length => return Parsed::Refused(HeadRefusal::AMBIGUOUS_LENGTH),
        Chunked::Yes => general = true,
        Chunked::Other => return Parsed::Refused(HeadRefusal::UNSUPPORTED_CODING),
    }
    if general {
        return Parsed::Fallback;
    }
    if !has_id {
        let id = fresh_id();
        write_header(out, b"x-request-id", &id);
        head.request_id = RequestId::Fresh(id);
    }
    if limits.trace {
        head.span = crate::request::phases::trace_start(traceparent, tracestate);
        if let Some(span) = &head.span {
            out.extend_from_slice(b"traceparent: ");
            span.context().write_traceparent(out);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prior) = &head.forwarded_for {
        let prior = buf[prior.clone()].trim_ascii();
        if !prior.is_empty() {
            out.extend_from_slice(prior);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(peer);
    out.extend_from_slice(if limits.tls {
        b"\r\nx-forwarded-proto: https\r\n\r\n"
    } else {
        b"\r\nx-forwarded-proto: http\r\n\r\n"
    });
    Parsed::Complete(head)
}

/// What a request's `Transfer-Encoding` headers say, all of them together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    Absent,
    /// One header, exactly `chunked` (any case, blanks around).
    Yes,
    /// Anything else: several headers, a list, another coding, `xchunked`.
    Other,
}

impl Chunked {
    fn and(self, value: &[u8]) -> Chunked {
        match self {
            Chunked::Absent if value.trim_ascii().eq_ignore_ascii_case(b"chunked") => Chunked::Yes,
            _ => Chunked::Other,
        }
    }
}

/// A Content-Length value: digits only (no sign, no spaces inside).
fn parse_length(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A response head from a backend, rewritten for the client.
pub(crate) struct ResponseHead {
    pub head_len: usize,
    pub status: u16,
    pub framing: Framing,
    /// The backend keeps the connection open after this response.
    pub upstream_keep_alive: bool,
    /// The client connection must close after it (body delimited by close).
    pub close_client: bool,
    pub retry_after: bool,
    /// The node's `X-Weir-Node`, at this range of the response buffer.
    pub node_name: Option<Range<usize>>,
    /// The backend's `Keep-Alive: timeout=N`: it closes the connection after
    /// N idle seconds.
    pub keep_alive_timeout: Option<Duration>,
}

/// The `timeout` parameter of a `Keep-Alive` header (`timeout=5, max=1000`).
fn keep_alive_timeout(value: &[u8]) -> Option<Duration> {
    value.split(|b| *b == b',').find_map(|param| {
        let (name, secs) = std::str::from_utf8(param).ok()?.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("timeout") {
            return None;
        }
        secs.trim()
            .parse::<u32>()
            .ok()
            .map(|s| Duration::from_secs(s.into()))
    })
}

/// What the client side adds to a response head.
pub(crate) struct ResponseContext<'a> {
    pub head_request: bool,
    pub request_id: &'a [u8],
    /// What the lb adds (the rate limit's headers; the edge's unless the
    /// backend sent them).
    pub answer: AnswerHeaders<'a>,
    pub client_close: bool,
}

/// Reads a response head from `buf` and writes the head for the client into
/// `out`. `Err` when it is not valid HTTP/1.x.
pub(crate) fn parse_response(
    buf: &[u8],
    ctx: &ResponseContext<'_>,
    out: &mut Vec<u8>,
) -> Result<Parsed<ResponseHead>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(Parsed::Partial),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return Err(httparse::Error::Status);
    };
    let Some(connection) = ConnectionTokens::read(resp.headers) else {
        return Err(httparse::Error::TooManyHeaders);
    };
    let mut head = ResponseHead {
        head_len,
        status,
        framing: Framing::UntilClose,
        upstream_keep_alive: if version == 1 {
            !connection.close
        } else {
            connection.keep_alive && !connection.close
        },
        close_client: ctx.client_close,
        retry_after: false,
        node_name: None,
        keep_alive_timeout: None,
    };
    let mut length = None;
    let mut chunked = false;
    let mut has_id = false;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    // `status` has three digits: httparse checked.
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(resp.reason.unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_te = false;
    let mut length_header: Option<Range<usize>> = None;
    let mut lines = Lines::new(buf);
    // Which of the edge's headers the backend set itself, by index.
    let mut sent_by_backend = 0u64;
    for h in resp.headers.iter() {
        let name = h.name;
        for (i, (added, _)) in ctx.answer.edge.iter().enumerate().take(64) {
            if name.eq_ignore_ascii_case(added.as_str()) {
                sent_by_backend |= 1 << i;
            }
        }
        match classify(name) {
            Known::HopByHop => {
                if name.eq_ignore_ascii_case("keep-alive") {
                    head.keep_alive_timeout =
                        keep_alive_timeout(h.value).or(head.keep_alive_timeout);
                }
                continue;
            }
            _ if connection.names(name) => continue,
            Known::ContentLength => {
                let n = std::str::from_utf8(h.value).ok().and_then(parse_length);
                match (n, length) {
                    (None, _) => return Err(httparse::Error::HeaderValue),
                    (Some(n), Some(prior)) if n != prior => {
                        return Err(httparse::Error::HeaderValue)
                    }
                    // An equal repeat is passed on once.
                    (Some(_), Some(_)) => continue,
                    (Some(n), None) => length = Some(n),
                }
                // Written now; taken out again if a Transfer-Encoding rules.
                lines.flush(out);
                let start = out.len();
                lines.keep(out, h);
                lines.flush(out);
                length_header = Some(start..out.len());
                continue;
            }
            Known::TransferEncoding => {
                has_te = true;
                // Chunked when it is the final coding (RFC 9112 §6.3).
                chunked = h
                    .value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            Known::XRequestId => has_id = true,
            Known::RetryAfter => head.retry_after = true,
            Known::XWeirNode => head.node_name = Some(offset(buf, h.value)),
            _ => {}
        }
        lines.keep(out, h);
    }
    lines.flush(out);
    if has_te {
        // A length beside a transfer coding is void, and a proxy must not
        // pass it on (RFC 9112 §6.3): it is how responses get smuggled.
        if let Some(range) = length_header {
            out.drain(range);
        }
    }
    head.framing =
        if ctx.head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked(ChunkedDecoder::default())
        } else if has_te {
            Framing::UntilClose
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
    if head.framing == Framing::UntilClose {
        head.upstream_keep_alive = false;
        head.close_client = true;
    }
    if !has_id {
        write_header(out, b"x-request-id", ctx.request_id);
    }
    if let Some(rate_limit) = ctx.answer.rate_limit {
        for (name, value) in rate_limit {
            write_header(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    for (i, (name, value)) in ctx.answer.edge.iter().enumerate() {
        if i >= 64 || sent_by_backend & (1 << i) == 0 {
            write_header(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if head.close_client {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Parsed::Complete(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadRules = HeadRules {
        max_headers: 100,
        max_url: 8192,
        tls: false,
        trace: false,
    };

    fn request(raw: &[u8]) -> (Parsed<RequestHead>, String) {
        let mut out = Vec::new();
        let parsed = parse_request(raw, LIMITS, b"10.0.0.9", None, || [b'f'; 32], &mut out);
        (parsed, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_request_head_loses_hop_by_hop_headers_and_gains_forwarding_ones() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-secret\r\n\
                    X-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 1.2.3.4\r\n\
                    X-Kept: yes\r\n\r\n";
        let (Parsed::Complete(head), out) = request(raw) else {
            panic!("not parsed")
        };
        assert_eq!(head.head_len, raw.len());
        assert_eq!(head.path(raw), "/a");
        assert_eq!(
            out,
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Kept: yes\r\nx-request-id: ffffffffffffffffffffffffffffffff\r\n\
             x-forwarded-for: 1.2.3.4, 10.0.0.9\r\nx-forwarded-proto: http\r\n\r\n"
        );
    }

    #[test]
    fn kept_lines_are_copied_as_they_stand_and_bare_lf_becomes_crlf() {
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Sp:   v  \r\nTE: trailers\r\nX-Lf: 1\nX-Last: z\r\n\r\n";
        let (Parsed::Complete(_), out) = request(raw) else {
            panic!("not parsed")
        };
        assert!(
            out.starts_with(
                "GET / HTTP/1.1\r\nHost: x\r\nX-Sp:   v  \r\nX-Lf: 1\r\nX-Last: z\r\nx-request-id"
            ),
            "{out:?}"
        );
    }

    #[test]
    fn a_clients_request_id_is_kept() {
        let raw =
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\r\nContent-Length: 3\r\n\r\nabc";
        let (Parsed::Complete(head), out) = request(raw) else {
            panic!("not parsed")
        };
        assert_eq!(head.request_id(raw), b"abc");
        assert_eq!(head.content_length, 3);
        assert_eq!(
            out.matches("x-request-id").count() + out.matches("X-Request-Id").count(),
            1
        );
    }

    #[test]
    fn ambiguous_hostless_or_oversized_requests_are_refused() {
        let refused = |raw: &[u8]| match request(raw).0 {
            Parsed::Refused(r) => r,
            _ => panic!("not refused: {}", String::from_utf8_lossy(raw)),
        };
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
        ] {
            assert_eq!(refused(raw), HeadRefusal::AMBIGUOUS_LENGTH);
        }
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(refused(raw), HeadRefusal::UNSUPPORTED_CODING);
        }
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\n\r\n"),
            HeadRefusal::MISSING_HOST
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            HeadRefusal::MISSING_HOST
        );
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(8192));
        assert_eq!(refused(long.as_bytes()), HeadRefusal::URL_TOO_LONG);
        let many = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "A: b\r\n".repeat(100)
        );
        assert_eq!(refused(many.as_bytes()), HeadRefusal::TOO_MANY_HEADERS);
    }

    #[test]
    fn unusual_requests_take_the_general_path() {
        for raw in [
            &b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  ChunKed \r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
            b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert!(
                matches!(request(raw).0, Parsed::Fallback),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(matches!(
            request(b"GET / HTTP/1.1\r\nHo").0,
            Parsed::Partial
        ));
    }

    fn response(raw: &[u8], head_request: bool) -> (ResponseHead, String) {
        let mut out = Vec::new();
        let ctx = ResponseContext {
            head_request,
            request_id: b"rid",
            answer: AnswerHeaders {
                rate_limit: None,
                edge: &[],
            },
            client_close: false,
        };
        match parse_response(raw, &ctx, &mut out) {
            Ok(Parsed::Complete(head)) => (head, String::from_utf8(out).unwrap()),
            _ => panic!("not parsed: {}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn a_backends_keep_alive_timeout_is_read_and_not_passed_on() {
        let (h, out) = response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nKeep-Alive: timeout=5, max=1000\r\n\r\n",
            false,
        );
        assert_eq!(h.keep_alive_timeout, Some(Duration::from_secs(5)));
        assert!(!out.to_ascii_lowercase().contains("keep-alive"), "{out}");
        for (value, timeout) in [
            ("max=3,TIMEOUT = 2", Some(2)),
            ("timeout=x", None),
            ("timeout=-1", None),
            ("max=5", None),
            ("", None),
        ] {
            let raw = format!("HTTP/1.1 204 No Content\r\nKeep-Alive: {value}\r\n\r\n");
            let (h, _) = response(raw.as_bytes(), false);
            assert_eq!(
                h.keep_alive_timeout,
                timeout.map(Duration::from_secs),
                "{value}"
            );
        }
        let (h, _) = response(b"HTTP/1.1 204 No Content\r\n\r\n", false);
        assert_eq!(h.keep_alive_timeout, None);
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let (h, out) = response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n",
            false,
        );
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.upstream_keep_alive && !h.close_client);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nx-request-id: rid\r\n\r\n"
        );
        let (h, _) = response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
        assert_eq!(h.framing, Framing::Empty, "HEAD has no body");
        let (h, _) = response(b"HTTP/1.1 204 No Content\r\n\r\n", false);
        assert_eq!(h.framing, Framing::Empty);
        let (h, out) = response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert!(matches!(h.framing, Framing::Chunked(_)));
        assert!(out.contains("Transfer-Encoding: chunked"), "relayed as is");
        let (h, out) = response(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false);
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(!h.upstream_keep_alive && h.close_client);
        assert!(out.ends_with("connection: close\r\n\r\n"));
        let (h, _) = response(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        assert!(!h.upstream_keep_alive, "HTTP/1.0 without keep-alive");
    }

    #[test]
    fn every_header_the_fast_path_acts_on_is_recognised_in_any_case() {
        for (name, known) in [
            ("TE", Known::HopByHop),
            ("Connection", Known::HopByHop),
            ("KEEP-ALIVE", Known::HopByHop),
            ("Proxy-Connection", Known::HopByHop),
            ("Trailer", Known::HopByHop),
            ("Upgrade", Known::Upgrade),
            ("Expect", Known::Expect),
            ("Transfer-Encoding", Known::TransferEncoding),
            ("Content-Length", Known::ContentLength),
            ("HOST", Known::Host),
            ("X-Forwarded-For", Known::XForwardedFor),
            ("x-forwarded-proto", Known::XForwardedProto),
            ("X-Request-ID", Known::XRequestId),
            ("Idempotency-Key", Known::IdempotencyKey),
            ("Retry-After", Known::RetryAfter),
            ("X-Weir-Node", Known::XWeirNode),
            ("X-Forwarded-Fox", Known::Other),
            ("Content-Type", Known::Other),
        ] {
            assert_eq!(classify(name), known, "{name}");
        }
    }

    #[test]
    fn a_length_beside_chunked_is_not_passed_on() {
        let (h, out) = response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert!(matches!(h.framing, Framing::Chunked(_)));
        assert!(
            !out.to_ascii_lowercase().contains("content-length"),
            "{out}"
        );
    }

    /// The general path's list and this one must not drift apart.
    #[test]
    fn every_hop_by_hop_header_of_the_general_path_is_dropped_or_refused_here() {
        for name in crate::request::rules::HOP_BY_HOP {
            assert!(
                matches!(
                    classify(name),
                    Known::HopByHop | Known::Upgrade | Known::TransferEncoding
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn conflicting_response_lengths_are_an_error() {
        let mut out = Vec::new();
        let ctx = ResponseContext {
            head_request: false,
            request_id: b"rid",
            answer: AnswerHeaders {
                rate_limit: None,
                edge: &[],
            },
            client_close: false,
        };
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert!(parse_response(raw, &ctx, &mut out).is_err());
    }
}
