//! What the lb adds at the edge: headers on every proxied answer (HSTS on
//! TLS connections only, as RFC 6797 asks, and a configurable set such as
//! `X-Content-Type-Options`), and the redirect of plain HTTP to HTTPS.
//!
//! An added header never replaces one the backend sent: the application
//! knows its own pages best (a page that must be framed sets its own
//! `X-Frame-Options`).

pub(crate) mod client_io;
pub(crate) mod proxy_protocol;
pub mod tls;
pub(crate) mod tls_stream;

use http::header::{HeaderName, HeaderValue};

/// The set `--security-headers` adds.
pub const SECURITY_HEADERS: [(&str, &str); 3] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "SAMEORIGIN"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
];

/// ACME HTTP-01 challenges (cert-manager, certbot) must reach the backend
/// over plain HTTP, or no certificate is ever issued.
const ACME_CHALLENGE: &str = "/.well-known/acme-challenge/";

/// Headers added to proxied answers, per kind of client connection.
#[derive(Debug, Clone, Default)]
pub struct EdgeHeaders {
    plain: Vec<(HeaderName, HeaderValue)>,
    tls: Vec<(HeaderName, HeaderValue)>,
}

impl EdgeHeaders {
    /// `added` on every answer; `hsts` (a `Strict-Transport-Security`
    /// value) on answers over TLS.
    pub fn new(added: Vec<(HeaderName, HeaderValue)>, hsts: Option<HeaderValue>) -> Self {
        let mut tls = added.clone();
        if let Some(hsts) = hsts {
            tls.retain(|(name, _)| name != http::header::STRICT_TRANSPORT_SECURITY);
            tls.push((http::header::STRICT_TRANSPORT_SECURITY, hsts));
        }
        let plain = added
            .into_iter()
            .filter(|(name, _)| name != http::header::STRICT_TRANSPORT_SECURITY)
            .collect();
        EdgeHeaders { plain, tls }
    }

    /// What answers on a connection of this kind get.
    pub fn for_connection(&self, tls: bool) -> &[(HeaderName, HeaderValue)] {
        if tls {
            &self.tls
        } else {
            &self.plain
        }
    }

    /// Adds the headers the backend did not send itself.
    pub fn apply(&self, tls: bool, headers: &mut http::HeaderMap) {
        for (name, value) in self.for_connection(tls) {
            headers.entry(name).or_insert_with(|| value.clone());
        }
    }
}

/// Parses `NAME: VALUE` (`--add-header`).
pub fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not NAME: VALUE"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a header name", name.trim()))?;
    if crate::request::rules::HOP_BY_HOP.contains(&name.as_str())
        || name == http::header::CONTENT_LENGTH
    {
        return Err(format!("{name} is set by the lb, not added"));
    }
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("{:?} is not a header value", value.trim()))?;
    Ok((name, value))
}

/// Where plain HTTP goes when `--redirect-http` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpsRedirect {
    /// The TLS listener's port (left out of the location when 443).
    pub port: u16,
}

impl HttpsRedirect {
    /// Whether a request for `path` is redirected (ACME challenges are not).
    pub fn applies_to(path: &str) -> bool {
        !path.starts_with(ACME_CHALLENGE)
    }

    /// `308` to the same host and target on the TLS listener; 400 when the
    /// request names no usable host.
    pub(crate) fn answer<B>(&self, req: &http::Request<B>) -> http::Response<axum::body::Body> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .map(|h| h.as_bytes())
            .or_else(|| req.uri().host().map(str::as_bytes))
            .unwrap_or_default();
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        match self.location(host, target.as_bytes()) {
            Some(location) => http::Response::builder()
                .status(http::StatusCode::PERMANENT_REDIRECT)
                .header(http::header::LOCATION, location)
                .header(http::header::CONTENT_LENGTH, "0")
                .body(axum::body::Body::empty())
                .unwrap_or_default(),
            None => crate::request::rules::json_error(
                http::StatusCode::BAD_REQUEST,
                "bad_host",
                "the Host header names no host to redirect to",
            ),
        }
    }

    /// The `Location` for a request to `host` (the Host header, perhaps
    /// with a port) and `target` (origin form); None when the host is not a
    /// plain host name or address, which the caller refuses with 400.
    pub fn location(&self, host: &[u8], target: &[u8]) -> Option<HeaderValue> {
        let name = host_without_port(host)?;
        let mut location = Vec::with_capacity(16 + name.len() + target.len());
        location.extend_from_slice(b"https://");
        location.extend_from_slice(name);
        if self.port != 443 {
            location.extend_from_slice(format!(":{}", self.port).as_bytes());
        }
        if !target.starts_with(b"/") {
            return None;
        }
        location.extend_from_slice(target);
        HeaderValue::from_bytes(&location).ok()
    }
}

/// `example.com:8080` → `example.com`, `[::1]:80` → `[::1]`; None for a
/// host with bytes no host name or address has (a location must not be
/// steered by a hostile Host).
fn host_without_port(host: &[u8]) -> Option<&[u8]> {
    let host = host.trim_ascii();
    let name = if host.starts_with(b"[") {
        let end = host.iter().position(|b| *b == b']')?;
        &host[..=end]
    } else {
        match host.iter().rposition(|b| *b == b':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    let valid = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
    let ok = !name.is_empty()
        && if name.starts_with(b"[") {
            name[1..name.len() - 1]
                .iter()
                .all(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.')
        } else {
            name.iter().all(valid)
        };
    ok.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsts_goes_on_tls_answers_only() {
        let edge = EdgeHeaders::new(
            vec![parse_header("X-Content-Type-Options: nosniff").unwrap()],
            Some(HeaderValue::from_static("max-age=63072000")),
        );
        assert_eq!(edge.for_connection(false).len(), 1);
        assert_eq!(edge.for_connection(true).len(), 2);
        let mut headers = http::HeaderMap::new();
        headers.insert("x-content-type-options", HeaderValue::from_static("other"));
        edge.apply(true, &mut headers);
        assert_eq!(
            headers["x-content-type-options"], "other",
            "the backend's wins"
        );
        assert_eq!(headers["strict-transport-security"], "max-age=63072000");
    }

    #[test]
    fn bad_added_headers_are_refused() {
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
        assert!(parse_header("connection: close").is_err());
        assert!(parse_header("x-a: line\nbreak").is_err());
    }

    #[test]
    fn redirects_keep_the_host_and_target() {
        let to_443 = HttpsRedirect { port: 443 };
        let to_8443 = HttpsRedirect { port: 8443 };
        let loc = |r: HttpsRedirect, host: &str, target: &str| {
            r.location(host.as_bytes(), target.as_bytes())
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(
            loc(to_443, "example.com:80", "/a?b=1").as_deref(),
            Some("https://example.com/a?b=1")
        );
        assert_eq!(
            loc(to_8443, "example.com", "/").as_deref(),
            Some("https://example.com:8443/")
        );
        assert_eq!(
            loc(to_443, "[::1]:8080", "/x").as_deref(),
            Some("https://[::1]/x")
        );
        assert_eq!(loc(to_443, "evil.com/path", "/"), None);
        assert_eq!(loc(to_443, "a@evil.com", "/"), None);
        assert_eq!(loc(to_443, "", "/"), None);
        assert_eq!(loc(to_443, "example.com", "http://other/"), None);
        assert!(HttpsRedirect::applies_to("/index.html"));
        assert!(!HttpsRedirect::applies_to(
            "/.well-known/acme-challenge/token"
        ));
    }
}
