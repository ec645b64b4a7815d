//! The load balancer's flags, as clap `Args` the `weir lb` and `weir up`
//! commands flatten: owned here, beside the [`LbConfig`] they become, so a
//! new setting is a field here and its line in [`BalancerArgs::config`].

use std::time::Duration;

use clap::Args;

use crate::backends::selection::{HashKey, Strategy};
use crate::LbConfig;

#[derive(Debug, Clone, Args)]
pub struct BalancerArgs {
    /// Selection strategy: round_robin, weighted_round_robin, least_connections,
    /// power_of_two_choices, consistent_hash or peak_ewma.
    #[arg(long, env = "WEIR_STRATEGY", default_value = "round_robin", value_parser = parse_strategy)]
    pub strategy: Strategy,
    /// What consistent_hash keys on: client_ip or header:NAME.
    #[arg(long, env = "WEIR_HASH_KEY", default_value = "client_ip")]
    pub hash_key: HashKey,
    /// Bearer token for admin endpoints that change state (generated when empty).
    #[arg(long, env = "WEIR_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Most client connections open at once, over every listener and serving
    /// thread (the lb stops accepting past it).
    #[arg(long, env = "WEIR_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Most connections open at once from one client IP (0: no limit, as
    /// nginx and HAProxy by default); past it, new ones get a JSON 429.
    #[arg(long, env = "WEIR_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,
    /// Largest request head (request line and headers) in bytes; past it, 431.
    #[arg(long, env = "WEIR_MAX_HEAD_BYTES", default_value_t = 32 * 1024, value_parser = clap::value_parser!(u32).range(1024..=1024 * 1024))]
    pub max_head_bytes: u32,
    /// Most header lines in a request; past it, 431.
    #[arg(long, env = "WEIR_MAX_HEADERS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(8..=1000))]
    pub max_headers: u32,
    /// Most HTTP/2 streams a client connection may have open at once
    /// (HAProxy's default; nginx allows 128).
    #[arg(long, env = "WEIR_H2_MAX_STREAMS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub h2_max_streams: u32,
    /// Longest request target (path and query) in bytes; past it, 414.
    #[arg(long, env = "WEIR_MAX_URL_BYTES", default_value_t = 8 * 1024, value_parser = clap::value_parser!(u32).range(256..=1024 * 1024))]
    pub max_url_bytes: u32,
    /// Most requests in flight per backend. Without it each backend's limit
    /// is learned from its response times (see --adaptive-in-flight).
    #[arg(long, env = "WEIR_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<u64>,
    /// Learn each backend's in-flight limit from its response times, so an
    /// overloaded backend gets a short queue and fast 503s (default on;
    /// `false`: no limit unless --max-in-flight).
    #[arg(long, env = "WEIR_ADAPTIVE_IN_FLIGHT", default_value_t = true, action = clap::ArgAction::Set)]
    pub adaptive_in_flight: bool,
    /// Requests that may wait for a backend slot when all are full; past it,
    /// 503 at once. Default: as many as the backends answer within
    /// --queue-timeout at their recent pace, at least 256.
    #[arg(long, env = "WEIR_QUEUE_SIZE")]
    pub queue_size: Option<usize>,
    /// How long a request waits for a backend slot before 503.
    #[arg(long, env = "WEIR_QUEUE_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub queue_timeout: Duration,
    /// How long a client may take to send its request headers; an idle
    /// keep-alive connection is closed after this long without a new request.
    #[arg(long, env = "WEIR_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// How long an upgraded connection (a WebSocket) may stay silent both
    /// ways before the lb closes it.
    #[arg(long, env = "WEIR_UPGRADE_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub upgrade_idle_timeout: Duration,
    /// How long an idle connection to a backend is kept for reuse: below
    /// the backends' own keep-alive timeout (uvicorn, Node.js, Apache: 5 s),
    /// so none is used as its backend closes it. A backend announcing
    /// `Keep-Alive: timeout=N` is held to less than N anyway.
    #[arg(long, env = "WEIR_UPSTREAM_IDLE_TIMEOUT", default_value = "4s", value_parser = humantime::parse_duration)]
    pub upstream_idle_timeout: Duration,
    /// How long a draining lb waits for open exchanges and upgraded
    /// connections (WebSockets) before closing them.
    #[arg(long, env = "WEIR_LB_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub lb_shutdown_grace: Duration,
    /// How long the lb waits for a backend's response headers before 504.
    #[arg(long, env = "WEIR_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub upstream_timeout: Duration,
    /// Consecutive 5xx answers that take a backend out of rotation for a while
    /// (connect failures do at once).
    #[arg(long, env = "WEIR_EJECT_AFTER", default_value_t = 5)]
    pub eject_after: u32,
    /// Most backends out of rotation at once, in percent.
    #[arg(long, env = "WEIR_MAX_EJECTION_PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_ejection_percent: u32,
    /// A backend coming back (health up, ejection over) gets a traffic share
    /// rising over this window (0s: off).
    #[arg(long, env = "WEIR_SLOW_START", default_value = "10s", value_parser = humantime::parse_duration)]
    pub slow_start: Duration,
    /// Log one structured line per proxied request (use with --log-format json).
    #[arg(long, env = "WEIR_ACCESS_LOG")]
    pub access_log: bool,
    /// Requests per second each client IP may make (unlimited when absent).
    #[arg(long, env = "WEIR_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Requests a client may make at once above the rate (default: the rate).
    #[arg(long, env = "WEIR_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// A per-route limit, `[METHOD ]PATH_PREFIX=RATE[:BURST]`, e.g. `POST /hash/=10:20`;
    /// repeatable, first match wins.
    #[arg(long = "rate-limit-route", env = "WEIR_RATE_LIMIT_ROUTES", value_delimiter = ';', value_parser = parse_route_limit)]
    pub rate_limit_routes: Vec<crate::admission::ratelimit::RouteLimit>,
    /// Share the rate limits through this Redis (`redis://host:6379`), so
    /// several lbs give a client one budget; if Redis is away, each lb
    /// limits on its own.
    #[arg(long, env = "WEIR_RATE_LIMIT_REDIS")]
    pub rate_limit_redis: Option<String>,
    /// Key prefix of the shared rate limits in Redis.
    #[arg(
        long,
        env = "WEIR_RATE_LIMIT_REDIS_PREFIX",
        default_value = "weir:ratelimit"
    )]
    pub rate_limit_redis_prefix: String,
    /// Client networks (CIDRs, comma-separated) that may use the admin API
    /// and dashboard; everyone when absent (changes still need the token).
    #[arg(long, env = "WEIR_ADMIN_ALLOW", value_delimiter = ',')]
    pub admin_allow: Vec<ipnet::IpNet>,
    /// Proxies (CIDRs) whose X-Forwarded-For names the client, comma-separated; none by default.
    #[arg(long, env = "WEIR_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Time between active health checks.
    #[arg(long, env = "WEIR_HEALTH_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub health_interval: Duration,
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    s.parse()
}

fn parse_route_limit(s: &str) -> Result<crate::admission::ratelimit::RouteLimit, String> {
    let (route, rate) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("expected [METHOD ]PATH_PREFIX=RATE[:BURST], got {s:?}"))?;
    let (method, prefix) = match route.trim().split_once(' ') {
        Some((m, p)) => (
            Some(
                http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|e| e.to_string())?,
            ),
            p.trim(),
        ),
        None => (None, route.trim()),
    };
    let (per_second, burst) = match rate.split_once(':') {
        Some((r, b)) => (r.trim().parse(), b.trim().parse()),
        None => (rate.trim().parse(), rate.trim().parse()),
    };
    let (per_second, burst): (u32, u32) = (
        per_second.map_err(|_| format!("bad rate in {s:?}"))?,
        burst.map_err(|_| format!("bad burst in {s:?}"))?,
    );
    Ok(crate::admission::ratelimit::RouteLimit {
        method,
        path_prefix: prefix.to_string(),
        policy: crate::admission::ratelimit::RatePolicy { per_second, burst },
    })
}

impl BalancerArgs {
    /// The admin token given, or a fresh random one (and whether it was generated).
    pub fn admin_token(&self) -> (String, bool) {
        match &self.admin_token {
            Some(t) if !t.is_empty() => (t.clone(), false),
            _ => {
                let bytes: [u8; 16] = rand::random();
                (hex::encode(bytes), true)
            }
        }
    }

    pub fn config(&self, backends: Vec<String>, admin_token: String) -> LbConfig {
        let mut config = LbConfig::new(backends);
        config.strategy = self.strategy;
        config.hash_key = self.hash_key.clone();
        config.admin_token = admin_token;
        config.health_interval = self.health_interval;
        config.rate_limit = crate::admission::ratelimit::RateLimitConfig {
            default: self
                .rate_limit
                .map(|per_second| crate::admission::ratelimit::RatePolicy {
                    per_second,
                    burst: self.rate_burst.unwrap_or(per_second),
                }),
            routes: self.rate_limit_routes.clone(),
        };
        config.trusted_proxies = self.trusted_proxies.clone();
        config.admin_allow = self.admin_allow.clone();
        config.rate_limit_redis = self.rate_limit_redis.clone();
        config.rate_limit_redis_prefix = self.rate_limit_redis_prefix.clone();
        config.max_connections = self.max_connections.max(1);
        config.max_connections_per_ip = self.max_connections_per_ip;
        config.max_head_bytes = self.max_head_bytes as usize;
        config.max_headers = self.max_headers as usize;
        config.h2_max_streams = self.h2_max_streams;
        config.max_url_bytes = self.max_url_bytes as usize;
        config.max_in_flight = self.max_in_flight.filter(|n| *n > 0);
        config.adaptive_in_flight = self.adaptive_in_flight;
        config.queue_size = self.queue_size;
        config.queue_timeout = self.queue_timeout;
        config.header_read_timeout = self.header_read_timeout;
        config.upgrade_idle_timeout = self.upgrade_idle_timeout;
        config.upstream_idle_timeout = self.upstream_idle_timeout;
        config.shutdown_grace = self.lb_shutdown_grace;
        config.upstream_timeout = self.upstream_timeout;
        config.access_log = self.access_log;
        config.slow_start = self.slow_start;
        config.ejection.eject_after = self.eject_after.max(1);
        config.ejection.max_ejection_percent = self.max_ejection_percent;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_limits_parse() {
        let r = parse_route_limit("POST /hash/=10:20").unwrap();
        assert_eq!(r.method, Some(http::Method::POST));
        assert_eq!(r.path_prefix, "/hash/");
        assert_eq!((r.policy.per_second, r.policy.burst), (10, 20));
        assert_eq!(parse_route_limit("/x=5").unwrap().policy.burst, 5);
        assert!(parse_route_limit("/x").is_err());
    }
}
