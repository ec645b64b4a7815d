//! The phases of a request that both paths share, each decided here once
//! (pingora's shape): where the request goes ([`route`]), whether its client
//! is within its rate limit ([`admit`]), what the lb adds to the answer
//! ([`AnswerHeaders`]), and the request's span ([`trace_start`],
//! [`trace_end`]). The fast path renders these decisions into bytes
//! and the general path into hyper's types; neither makes them itself.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::admission::ratelimit::Verdict;
use crate::edge::HttpsRedirect;
use crate::request::rules;
use crate::state::Lb;

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// The lb's admin API (`/lb/…` and `/dashboard` with `--admin-on-main`).
    Admin,
    /// A redirect to the TLS listener (`--redirect-http`, plain connections).
    Redirect(HttpsRedirect),
    /// A backend.
    Backend,
}

/// Where a request for `path` from `client` (the connection's peer, or
/// its PROXY header's source), on a TLS connection or not, goes.
pub(crate) fn route(lb: &Lb, path: &str, tls: bool, client: IpAddr) -> Route {
    let admin_reachable =
        !lb.config.admin_loopback_only || is_loopback(client) || rules::is_health_path(path);
    if lb.config.admin_on_main && admin_reachable && rules::is_admin_path(path) {
        return Route::Admin;
    }
    match lb.config.redirect_http {
        Some(redirect) if !tls && HttpsRedirect::applies_to(path) => Route::Redirect(redirect),
        _ => Route::Backend,
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// A request over its client's rate limit: answered 429 by the lb.
#[derive(Debug)]
pub(crate) struct RateLimited {
    pub client: IpAddr,
    pub retry_after: Duration,
    /// `Retry-After`, `RateLimit-Policy`, `RateLimit`.
    pub headers: HeaderMap,
}

impl RateLimited {
    pub const STATUS: StatusCode = StatusCode::TOO_MANY_REQUESTS;
    pub const CODE: &'static str = "rate_limited";

    pub fn message(&self) -> String {
        format!(
            "too many requests from {}; retry in {:.1} s",
            self.client,
            self.retry_after.as_secs_f64()
        )
    }
}

/// The rate limit's verdict on a request from `client`: the headers its
/// answer carries (none when no limit applies), or the refusal, counted.
pub(crate) async fn admit(
    lb: &Lb,
    client: IpAddr,
    method: &Method,
    path: &str,
) -> Result<Option<HeaderMap>, RateLimited> {
    let verdict = match &lb.shared_limits {
        Some(shared) => {
            lb.rate_limits
                .check_shared(shared, client, method, path)
                .await
        }
        None => lb.rate_limits.check(client, method, path),
    };
    match verdict {
        Verdict::Unlimited => Ok(None),
        Verdict::Allowed(headers) => Ok(Some(headers)),
        Verdict::Limited {
            retry_after,
            headers,
        } => {
            lb.rejected_rate_limit.fetch_add(1, Ordering::Relaxed);
            Err(RateLimited {
                client,
                retry_after,
                headers,
            })
        }
    }
}

/// The span of a request the lb answers or forwards: continuing the
/// client's `traceparent`/`tracestate`, or starting a trace. None when the
/// lb exports no spans: the client's headers then go on untouched.
pub(crate) fn trace_start(
    traceparent: Option<&[u8]>,
    tracestate: Option<&[u8]>,
) -> Option<weir_trace::Span> {
    let parent = traceparent.and_then(|p| weir_trace::TraceContext::parse(p, tracestate));
    trace_continue(parent.as_ref())
}

/// The same, from a context already read.
pub(crate) fn trace_continue(
    parent: Option<&weir_trace::TraceContext>,
) -> Option<weir_trace::Span> {
    let tracer = weir_trace::tracer();
    if !tracer.is_exporting() {
        return None;
    }
    tracer.start("lb.request", weir_trace::SpanKind::Server, parent)
}

/// Ends a request's span with what became of it.
pub(crate) fn trace_end(span: weir_trace::Span, method: &Method, path: &str, status: u16) {
    let path = weir_trace::KeyValue::new("url.path", path.to_owned());
    span.end_answered(method.as_str(), path, status);
}

/// What the lb adds to an answer, whether a backend's or its own: the
/// rate limit's headers, always, and the edge's (`--hsts` on TLS,
/// `--add-header`) unless the answer already has them — the application
/// knows its own pages best.
#[derive(Clone, Copy)]
pub(crate) struct AnswerHeaders<'a> {
    pub rate_limit: Option<&'a HeaderMap>,
    pub edge: &'a [(HeaderName, HeaderValue)],
}

impl<'a> AnswerHeaders<'a> {
    pub fn new(lb: &'a Lb, tls: bool, rate_limit: Option<&'a HeaderMap>) -> Self {
        AnswerHeaders {
            rate_limit,
            edge: lb.config.edge_headers.for_connection(tls),
        }
    }

    /// Adds them to an answer's headers (the general path).
    pub fn apply(&self, headers: &mut HeaderMap) {
        if let Some(rate_limit) = self.rate_limit {
            headers.extend(rate_limit.clone());
        }
        for (name, value) in self.edge {
            headers.entry(name).or_insert_with(|| value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::EdgeHeaders;
    use crate::LbConfig;

    fn lb(config: LbConfig) -> std::sync::Arc<Lb> {
        Lb::new(config).expect("lb")
    }

    fn config() -> LbConfig {
        LbConfig::new(vec!["http://127.0.0.1:9".into()])
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 5));

    #[test]
    fn admin_paths_go_to_the_admin_api_only_when_it_is_on_the_main_listener() {
        let mut config = config();
        config.admin_on_main = true;
        let on_main = lb(config.clone());
        assert_eq!(route(&on_main, "/lb/stats", false, REMOTE), Route::Admin);
        assert_eq!(route(&on_main, "/tasks", false, LOCAL), Route::Backend);
        config.admin_on_main = false;
        assert_eq!(
            route(&lb(config), "/lb/stats", false, LOCAL),
            Route::Backend
        );
    }

    #[test]
    fn a_public_listener_keeps_the_admin_api_for_loopback_clients_unless_told() {
        let public: std::net::SocketAddr = "0.0.0.0:80".parse().unwrap();
        let mut config = config();
        let said = config.guard_admin(&[public]);
        assert!(said.contains("loopback clients only"), "{said}");
        let guarded = lb(config.clone());
        assert_eq!(route(&guarded, "/lb/stats", false, LOCAL), Route::Admin);
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(route(&guarded, "/dashboard", false, mapped), Route::Admin);
        assert_eq!(
            route(&guarded, "/dashboard/tasks", false, LOCAL),
            Route::Admin
        );
        for path in [
            "/lb/stats",
            "/dashboard",
            "/dashboard/tasks",
            "/lb/strategy",
        ] {
            assert_eq!(
                route(&guarded, path, false, REMOTE),
                Route::Backend,
                "{path}"
            );
        }
        // Probes and balancers in front still reach the lb's health.
        let ready = "/lb/health/ready";
        assert_eq!(route(&guarded, ready, false, REMOTE), Route::Admin);
        // Loopback listeners, an allow list or an admin listener: as asked.
        let mut local = config.clone();
        local.guard_admin(&["127.0.0.1:80".parse().unwrap()]);
        assert_eq!(route(&lb(local), "/lb/stats", false, REMOTE), Route::Admin);
        let mut allowed = config.clone();
        allowed.admin_allow = vec!["203.0.113.0/24".parse().unwrap()];
        allowed.guard_admin(&[public]);
        assert_eq!(
            route(&lb(allowed), "/lb/stats", false, REMOTE),
            Route::Admin
        );
        let mut apart = config;
        apart.admin_on_main = false;
        let said = apart.guard_admin(&[public]);
        assert!(said.contains("--admin-listen"), "{said}");
    }

    #[test]
    fn plain_requests_are_redirected_but_tls_and_acme_challenges_are_not() {
        let redirect = HttpsRedirect { port: 8443 };
        let config = LbConfig {
            redirect_http: Some(redirect),
            ..config()
        };
        let lb = lb(config);
        assert_eq!(
            route(&lb, "/tasks", false, LOCAL),
            Route::Redirect(redirect)
        );
        assert_eq!(route(&lb, "/tasks", true, LOCAL), Route::Backend);
        let challenge = "/.well-known/acme-challenge/token";
        assert_eq!(route(&lb, challenge, false, LOCAL), Route::Backend);
    }

    #[test]
    fn edge_headers_yield_to_the_backends_own_and_rate_limit_headers_do_not() {
        let config = LbConfig {
            edge_headers: EdgeHeaders::new(
                vec![
                    (
                        HeaderName::from_static("x-frame-options"),
                        HeaderValue::from_static("SAMEORIGIN"),
                    ),
                    (
                        HeaderName::from_static("x-content-type-options"),
                        HeaderValue::from_static("nosniff"),
                    ),
                ],
                Some(HeaderValue::from_static("max-age=60")),
            ),
            ..config()
        };
        let lb = lb(config);
        let mut limits = HeaderMap::new();
        limits.insert(
            "ratelimit",
            HeaderValue::from_static("limit=10, remaining=9"),
        );
        let mut answer = HeaderMap::new();
        answer.insert("x-frame-options", HeaderValue::from_static("DENY"));
        answer.insert("ratelimit", HeaderValue::from_static("from the backend"));
        AnswerHeaders::new(&lb, true, Some(&limits)).apply(&mut answer);
        assert_eq!(answer["x-frame-options"], "DENY");
        assert_eq!(answer["x-content-type-options"], "nosniff");
        assert_eq!(answer["strict-transport-security"], "max-age=60");
        assert_eq!(answer["ratelimit"], "limit=10, remaining=9");
        // No HSTS over plain HTTP (RFC 6797 §7.2).
        let mut plain = HeaderMap::new();
        AnswerHeaders::new(&lb, false, None).apply(&mut plain);
        assert!(!plain.contains_key("strict-transport-security"));
        assert_eq!(plain["x-content-type-options"], "nosniff");
    }
}
