//! Per-client rate limits (GCRA, by the `governor` crate).
//!
//! A default policy and per-route overrides (method + path prefix, first match
//! wins). Over the limit a client gets 429 with an accurate `Retry-After`, the
//! IETF draft's `RateLimit-Policy` / `RateLimit` headers and a JSON body.
//! Client state lives in governor's keyed store; idle clients are dropped by
//! housekeeping (`retain_recent`: only keys whose state is indistinguishable
//! from a fresh one), so memory stays bounded under many distinct IPs without
//! ever handing an active client a fresh bucket. The client IP is the peer's,
//! or — when the peer is a trusted proxy — the rightmost untrusted address in
//! `X-Forwarded-For`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota};
use http::{HeaderMap, HeaderValue, Method};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::admission::ratelimit_shared::{SharedError, SharedLimiter};

/// Most recently-limited clients `/lb/rate-limits` remembers.
const MAX_LIMITED_SHOWN: usize = 1000;
/// How long a limited client stays listed after its last rejection.
const LIMITED_SHOWN_FOR: Duration = Duration::from_secs(60);

pub use crate::admission::rate::RatePolicy;

/// A stricter (or looser) policy for some requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RouteLimitFields")]
pub struct RouteLimit {
    /// Only this method (any when absent).
    #[serde(default, with = "method_opt")]
    pub method: Option<Method>,
    /// Paths starting with this.
    pub path_prefix: String,
    #[serde(flatten)]
    pub policy: RatePolicy,
}

/// [`RouteLimit`] as written: its fields closed (`flatten` cannot refuse
/// unknown ones).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteLimitFields {
    #[serde(default, with = "method_opt")]
    method: Option<Method>,
    path_prefix: String,
    per_second: u32,
    burst: u32,
}

impl From<RouteLimitFields> for RouteLimit {
    fn from(f: RouteLimitFields) -> Self {
        RouteLimit {
            method: f.method,
            path_prefix: f.path_prefix,
            policy: RatePolicy {
                per_second: f.per_second,
                burst: f.burst,
            },
        }
    }
}

/// The whole rate-limit configuration; `default: None` means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    #[serde(default)]
    pub default: Option<RatePolicy>,
    #[serde(default)]
    pub routes: Vec<RouteLimit>,
}

mod method_opt {
    use http::Method;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Option<Method>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_str(m.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Method>, D::Error> {
        let m: Option<String> = Option::deserialize(d)?;
        m.map(|m| {
            Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

impl RatePolicy {
    fn quota(&self) -> Result<Quota, String> {
        let rate = NonZeroU32::new(self.per_second).ok_or("per_second must be at least 1")?;
        let burst = NonZeroU32::new(self.burst).ok_or("burst must be at least 1")?;
        Ok(Quota::per_second(rate).allow_burst(burst))
    }

    /// The window the draft headers describe: the time a full burst takes to refill.
    fn window_secs(&self) -> u64 {
        u64::from(self.burst)
            .div_ceil(u64::from(self.per_second.max(1)))
            .max(1)
    }
}

type Limiter = DefaultKeyedRateLimiter<IpAddr, StateInformationMiddleware>;

struct Limiters {
    config: RateLimitConfig,
    default: Option<Limiter>,
    routes: Vec<Limiter>,
}

impl Limiters {
    fn build(config: RateLimitConfig) -> Result<Self, String> {
        let make = |p: &RatePolicy| -> Result<Limiter, String> {
            Ok(DefaultKeyedRateLimiter::keyed(p.quota()?)
                .with_middleware::<StateInformationMiddleware>())
        };
        let default = config.default.as_ref().map(make).transpose()?;
        let routes = config
            .routes
            .iter()
            .map(|r| {
                if !r.path_prefix.starts_with('/') {
                    return Err(format!("path_prefix {:?} must start with /", r.path_prefix));
                }
                make(&r.policy)
            })
            .collect::<Result<_, _>>()?;
        Ok(Limiters {
            config,
            default,
            routes,
        })
    }

    /// The limiter and policy (with its name) governing one request.
    fn for_request(&self, method: &Method, path: &str) -> Option<(&Limiter, &RatePolicy, String)> {
        for (i, r) in self.config.routes.iter().enumerate() {
            if r.method.as_ref().is_none_or(|m| m == method) && path.starts_with(&r.path_prefix) {
                return Some((&self.routes[i], &r.policy, format!("route-{i}")));
            }
        }
        let policy = self.config.default.as_ref()?;
        Some((self.default.as_ref()?, policy, "default".to_string()))
    }
}

/// What the limiter decided for one request.
pub enum Verdict {
    /// Not limited at all.
    Unlimited,
    /// Let through; these headers go on the response.
    Allowed(HeaderMap),
    /// Refused: wait this long; these headers go on the 429.
    Limited {
        retry_after: Duration,
        headers: HeaderMap,
    },
}

/// The draft's `RateLimit-Policy` header for a policy.
fn policy_headers(name: &str, policy: &RatePolicy) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let policy_header = format!("\"{name}\";q={};w={}", policy.burst, policy.window_secs());
    if let Ok(v) = HeaderValue::from_str(&policy_header) {
        headers.insert("ratelimit-policy", v);
    }
    headers
}

/// Let through, with `remaining` requests left in the burst.
fn allowed(name: &str, policy: &RatePolicy, remaining: u32) -> Verdict {
    let mut headers = policy_headers(name, policy);
    // Time until the bucket is full again.
    let used = u64::from(policy.burst.saturating_sub(remaining));
    let reset = used.div_ceil(u64::from(policy.per_second.max(1)));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{name}\";r={remaining};t={reset}")) {
        headers.insert("ratelimit", v);
    }
    Verdict::Allowed(headers)
}

/// The balancer's rate limits, swappable at runtime.
pub struct RateLimits {
    limiters: ArcSwap<Limiters>,
    trusted_proxies: Vec<IpNet>,
    /// Recently limited clients: rejections and when the last one was.
    limited: Mutex<HashMap<IpAddr, (u64, Instant)>>,
    /// When the last "Redis unavailable" warning was logged.
    shared_warned: Mutex<Option<Instant>>,
}

impl RateLimits {
    pub fn new(config: RateLimitConfig, trusted_proxies: Vec<IpNet>) -> Result<Self, String> {
        Ok(RateLimits {
            limiters: ArcSwap::from_pointee(Limiters::build(config)?),
            trusted_proxies,
            limited: Mutex::new(HashMap::new()),
            shared_warned: Mutex::new(None),
        })
    }

    /// Replaces the policies (client state starts afresh).
    pub fn set(&self, config: RateLimitConfig) -> Result<(), String> {
        self.limiters
            .store(std::sync::Arc::new(Limiters::build(config)?));
        Ok(())
    }

    pub fn config(&self) -> RateLimitConfig {
        self.limiters.load().config.clone()
    }

    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.trusted_proxies
    }

    /// The client a request comes from: the peer, or through trusted proxies
    /// the rightmost untrusted `X-Forwarded-For` entry.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.client_ip_from(
            peer,
            headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
    }

    /// [`Self::client_ip`] from the `X-Forwarded-For` values alone.
    pub(crate) fn client_ip_from<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a str>,
    ) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let forwarded = forwarded_for
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        forwarded
            .iter()
            .rev()
            .find(|ip| !self.is_trusted(**ip))
            .or(forwarded.first())
            .copied()
            .unwrap_or(peer)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Checks one request from `client` against this balancer's own state.
    pub fn check(&self, client: IpAddr, method: &Method, path: &str) -> Verdict {
        let limiters = self.limiters.load();
        let Some((limiter, policy, name)) = limiters.for_request(method, path) else {
            return Verdict::Unlimited;
        };
        match limiter.check_key(&client) {
            Ok(snapshot) => allowed(&name, policy, snapshot.remaining_burst_capacity()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                self.limited(client, &name, policy, wait)
            }
        }
    }

    /// Checks one request against the budget every balancer shares in Redis;
    /// when Redis cannot answer, against this balancer's own state.
    pub async fn check_shared(
        &self,
        shared: &SharedLimiter,
        client: IpAddr,
        method: &Method,
        path: &str,
    ) -> Verdict {
        let (policy, name) = {
            let limiters = self.limiters.load();
            match limiters.for_request(method, path) {
                Some((_, policy, name)) => (policy.clone(), name),
                None => return Verdict::Unlimited,
            }
        };
        match shared.check(&name, &policy, client).await {
            Ok(d) if d.allowed => allowed(&name, &policy, d.remaining),
            Ok(d) => self.limited(client, &name, &policy, d.wait),
            Err(e) => {
                self.note_shared_failure(&e);
                self.check(client, method, path)
            }
        }
    }

    fn note_shared_failure(&self, e: &SharedError) {
        let mut last = self.shared_warned.lock().unwrap_or_else(|e| e.into_inner());
        // One line every 10 s, not one per request.
        if last.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
            tracing::warn!(error = %e, "shared rate limits unavailable; using this lb's own");
            *last = Some(Instant::now());
        }
    }

    fn limited(&self, client: IpAddr, name: &str, policy: &RatePolicy, wait: Duration) -> Verdict {
        let mut headers = policy_headers(name, policy);
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(v) = HeaderValue::from_str(&format!("\"{name}\";r=0;t={secs}")) {
            headers.insert("ratelimit", v);
        }
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        self.note_limited(client);
        Verdict::Limited {
            retry_after: wait,
            headers,
        }
    }

    pub(crate) fn note_limited(&self, client: IpAddr) {
        let mut limited = self.limited.lock().unwrap_or_else(|e| e.into_inner());
        if limited.len() >= MAX_LIMITED_SHOWN && !limited.contains_key(&client) {
            return;
        }
        let entry = limited.entry(client).or_insert((0, Instant::now()));
        entry.0 += 1;
        entry.1 = Instant::now();
    }

    /// Clients limited in the last minute: (ip, rejections, seconds since the last).
    pub fn limited_clients(&self) -> Vec<(IpAddr, u64, f64)> {
        let limited = self.limited.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = limited
            .iter()
            .filter(|(_, (_, at))| at.elapsed() < LIMITED_SHOWN_FOR)
            .map(|(ip, (n, at))| (*ip, *n, at.elapsed().as_secs_f64()))
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.1));
        out
    }

    /// Clients with live limiter state.
    pub fn tracked_clients(&self) -> usize {
        let l = self.limiters.load();
        l.default.as_ref().map_or(0, |d| d.len()) + l.routes.iter().map(|r| r.len()).sum::<usize>()
    }

    /// Drops idle clients' state (and old entries of the limited list).
    pub fn housekeep(&self) {
        let l = self.limiters.load();
        for limiter in l.default.iter().chain(l.routes.iter()) {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.limited
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (_, at)| at.elapsed() < LIMITED_SHOWN_FOR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_second: u32, burst: u32) -> RateLimits {
        RateLimits::new(
            RateLimitConfig {
                default: Some(RatePolicy { per_second, burst }),
                routes: vec![RouteLimit {
                    method: Some(Method::POST),
                    path_prefix: "/hash/".into(),
                    policy: RatePolicy {
                        per_second: 1,
                        burst: 1,
                    },
                }],
            },
            vec!["10.0.0.0/8".parse().unwrap()],
        )
        .unwrap()
    }

    #[test]
    fn burst_then_limited_with_headers() {
        let l = limits(10, 3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for expected_remaining in [2, 1, 0] {
            match l.check(ip, &Method::GET, "/") {
                Verdict::Allowed(h) => {
                    assert_eq!(h["ratelimit-policy"], "\"default\";q=3;w=1");
                    assert!(h["ratelimit"]
                        .to_str()
                        .unwrap()
                        .contains(&format!("r={expected_remaining}")));
                }
                _ => panic!("should be allowed"),
            }
        }
        match l.check(ip, &Method::GET, "/") {
            Verdict::Limited {
                retry_after,
                headers,
            } => {
                assert!(retry_after <= Duration::from_millis(100), "{retry_after:?}");
                assert_eq!(headers["retry-after"], "1");
                assert_eq!(headers["ratelimit"], "\"default\";r=0;t=1");
            }
            _ => panic!("should be limited"),
        }
        // Another client is not affected.
        assert!(matches!(
            l.check("192.0.2.2".parse().unwrap(), &Method::GET, "/"),
            Verdict::Allowed(_)
        ));
        assert_eq!(l.limited_clients()[0].0, ip);
    }

    #[test]
    fn route_override_is_stricter() {
        let l = limits(100, 100);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(matches!(
            l.check(ip, &Method::POST, "/hash/md5"),
            Verdict::Allowed(_)
        ));
        assert!(matches!(
            l.check(ip, &Method::POST, "/hash/md5"),
            Verdict::Limited { .. }
        ));
        // GET on the same path falls to the default policy.
        assert!(matches!(
            l.check(ip, &Method::GET, "/hash/md5"),
            Verdict::Allowed(_)
        ));
    }

    #[test]
    fn client_ip_trusts_only_configured_proxies() {
        let l = limits(1, 1);
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.1.1.1"),
        );
        // From an untrusted peer the header is ignored: a client cannot pick its bucket.
        let peer: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(l.client_ip(peer, &h), peer);
        // From a trusted proxy the rightmost untrusted address is the client.
        assert_eq!(
            l.client_ip("10.0.0.5".parse().unwrap(), &h),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn idle_clients_are_forgotten_active_ones_kept() {
        let l = limits(1000, 1);
        for i in 0..500u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0xC000_0200 + i));
            l.check(ip, &Method::GET, "/");
        }
        assert_eq!(l.tracked_clients(), 500);
        // 1000/s refills one cell in 1 ms: after a few ms every client is idle again.
        let deadline = Instant::now() + Duration::from_secs(5);
        while l.tracked_clients() > 0 {
            assert!(Instant::now() < deadline, "idle clients never dropped");
            std::thread::sleep(Duration::from_millis(5));
            l.housekeep();
        }
    }
}
