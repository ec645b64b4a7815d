//! The load balancer's settings.

use std::time::Duration;

use crate::admission::ratelimit::RateLimitConfig;
use crate::backends::outlier::EjectionConfig;
use crate::backends::selection::{HashKey, Strategy};

/// What one `--backends-dns` value names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DnsTarget {
    /// `NAME:PORT`: every A/AAAA address of NAME, on PORT.
    Host { name: String, port: u16 },
    /// `_service._proto.NAME` (no port): SRV records give hosts and ports.
    Srv { name: String },
}

impl std::str::FromStr for DnsTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.starts_with('_') && !s.contains(':') {
            return Ok(DnsTarget::Srv { name: s.into() });
        }
        let (name, port) = s.rsplit_once(':').ok_or_else(|| {
            format!("{s:?}: expected NAME:PORT, or an SRV name like _http._tcp.api")
        })?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{s:?}: the port must be 1 to 65535"))?;
        if name.is_empty() {
            return Err(format!("{s:?}: no name"));
        }
        Ok(DnsTarget::Host {
            name: name.into(),
            port,
        })
    }
}

impl std::fmt::Display for DnsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsTarget::Host { name, port } => write!(f, "{name}:{port}"),
            DnsTarget::Srv { name } => f.write_str(name),
        }
    }
}

/// How the load balancer behaves. Built by the CLI from flags, env and config file.
#[derive(Clone, Debug)]
pub struct LbConfig {
    /// Backend base URLs, e.g. `http://127.0.0.1:8081`.
    pub backends: Vec<String>,
    /// Selection strategy at start.
    pub strategy: Strategy,
    /// What `consistent_hash` keys on.
    pub hash_key: HashKey,
    /// Bearer token required by admin endpoints that change state.
    pub admin_token: String,
    /// Time between active health checks of each backend.
    pub health_interval: Duration,
    /// How long a health check may take.
    pub health_timeout: Duration,
    /// Consecutive failed checks that mark a backend down.
    pub health_fall: u32,
    /// Consecutive passed checks that mark it up again.
    pub health_rise: u32,
    /// Upstream TCP connect timeout.
    pub connect_timeout: Duration,
    /// How long to wait for an upstream's response headers before answering 504.
    pub upstream_timeout: Duration,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// Names whose addresses are backends (`--backends-dns`).
    pub backends_dns: Vec<DnsTarget>,
    /// How often those names are resolved again.
    pub dns_interval: Duration,
    /// The DNS server to ask (default: the system's resolv.conf).
    pub dns_server: Option<std::net::SocketAddr>,
    /// Every connection opens with a PROXY protocol header naming the client
    /// (a trusted balancer in front); one without is refused.
    pub proxy_protocol: bool,
    /// Every connection to a backend opens with a PROXY v2 header naming the
    /// client (`--send-proxy-protocol`); such connections are not shared
    /// between clients.
    pub send_proxy_protocol: bool,
    /// Certificates for the TLS listener ([`crate::serve_tls`]).
    pub tls: Option<crate::edge::tls::TlsSettings>,
    /// How `https://` backends are verified, and the client certificate
    /// they may ask for.
    pub backend_tls: crate::upstream::tls::BackendTlsSettings,
    /// Headers added to proxied answers the backend did not set itself.
    pub edge_headers: crate::edge::EdgeHeaders,
    /// Plain HTTP answered with a 308 to the TLS listener (ACME challenges
    /// and the admin API excepted).
    pub redirect_http: Option<crate::edge::HttpsRedirect>,
    /// Most client connections open at once, over every listener and serving
    /// thread of this `Lb`; past it the lb stops accepting (new connections
    /// wait in the kernel's backlog).
    pub max_connections: usize,
    /// Most connections open at once from one client IP (0: no limit).
    pub max_connections_per_ip: usize,
    /// Largest request head in bytes (431 past it).
    pub max_head_bytes: usize,
    /// Most header lines in a request (431 past it).
    pub max_headers: usize,
    /// Longest request target in bytes (414 past it).
    pub max_url_bytes: usize,
    /// Most HTTP/2 streams open at once on one client connection.
    pub h2_max_streams: u32,
    /// Most requests in flight on one backend; when `None`, each backend's
    /// adaptive limit (unless `adaptive_in_flight` is off: then unlimited).
    pub max_in_flight: Option<u64>,
    /// Learn each backend's in-flight limit from its response times.
    pub adaptive_in_flight: bool,
    /// Requests that may wait for a free backend slot when every backend is
    /// at its in-flight limit; past it, 503 at once. `None`: as many as the
    /// backends answer within `queue_timeout` at their recent pace, at
    /// least [`crate::backends::dispatch::DEFAULT_QUEUE_SIZE`].
    pub queue_size: Option<usize>,
    /// How long a queued request waits before 503.
    pub queue_timeout: Duration,
    /// How long a client may take to send a request's headers (slowloris).
    pub header_read_timeout: Duration,
    /// How long an idle pooled connection to a backend is kept: less than
    /// the keep-alive timeouts of common application servers (uvicorn,
    /// Node.js, Apache: 5 s), so the lb retires a connection before its
    /// backend closes it — a request sent just as the backend closes is
    /// lost, and a POST cannot be sent again. A backend that announces its
    /// own (`Keep-Alive: timeout=N`) is held to that, less a margin.
    pub upstream_idle_timeout: Duration,
    /// How long an upgraded connection (WebSocket) may pass no byte either
    /// way before the lb closes both sides.
    pub upgrade_idle_timeout: Duration,
    /// Passive health: when failing backends are taken out of rotation.
    pub ejection: EjectionConfig,
    /// A backend coming back gets a share of traffic rising over this window.
    pub slow_start: Duration,
    /// Retries may add at most this share of requests, in percent...
    pub retry_budget_percent: u64,
    /// ...but at least this many per second.
    pub retry_budget_min_per_second: u64,
    /// Serve `/lb/*` on the main listener (off when the admin API has a
    /// listener of its own; `/lb/*` is then proxied like any path).
    pub admin_on_main: bool,
    /// Log one structured line per proxied request (target `weir_lb::access`).
    pub access_log: bool,
    /// Per-client rate limits (none by default).
    pub rate_limit: RateLimitConfig,
    /// Share the rate limits with every lb using this Redis (`redis://…`);
    /// `None`: each lb limits on its own.
    pub rate_limit_redis: Option<String>,
    /// Key prefix of the shared limits in Redis.
    pub rate_limit_redis_prefix: String,
    /// Client networks that may reach the admin API (everyone when empty).
    pub admin_allow: Vec<ipnet::IpNet>,
    /// The admin API on the main listener answers loopback clients only;
    /// others' `/lb/*` and `/dashboard` go to the backends like any path
    /// (see [`LbConfig::guard_admin`]).
    pub admin_loopback_only: bool,
    /// Proxies whose `X-Forwarded-For` is believed (none by default).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// The connect timeout of an attempt after which no backend is left to try:
/// long enough for the SYNs Linux resends at 1 s and 3 s when a busy
/// backend's accept queue dropped the first (a burst of new connections),
/// which a 1 s timeout turned into 502s.
const LAST_ATTEMPT_CONNECT_TIMEOUT: Duration = Duration::from_millis(3500);

impl LbConfig {
    /// How long an attempt's connect may take: `connect_timeout`, so a
    /// backend that does not answer is left quickly for another — but on
    /// the last attempt (`last`), at least [`LAST_ATTEMPT_CONNECT_TIMEOUT`].
    pub(crate) fn connect_timeout_for(&self, last: bool) -> Duration {
        if last {
            self.connect_timeout.max(LAST_ATTEMPT_CONNECT_TIMEOUT)
        } else {
            self.connect_timeout
        }
    }

    /// The permits of the lb's connection semaphore: `max_connections`,
    /// at least one and at most what `acquire_many` can wait for at once.
    pub(crate) fn connection_permits(&self) -> u32 {
        u32::try_from(self.max_connections.max(1)).unwrap_or(u32::MAX)
    }

    pub fn new(backends: Vec<String>) -> Self {
        LbConfig {
            backends,
            strategy: Strategy::RoundRobin,
            hash_key: HashKey::ClientIp,
            admin_token: String::new(),
            health_interval: Duration::from_secs(2),
            health_timeout: Duration::from_secs(1),
            health_fall: 2,
            health_rise: 2,
            connect_timeout: Duration::from_secs(1),
            upstream_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            backends_dns: Vec::new(),
            dns_interval: Duration::from_secs(5),
            dns_server: None,
            proxy_protocol: false,
            tls: None,
            max_connections: 10_000,
            max_connections_per_ip: 0,
            max_head_bytes: 32 * 1024,
            max_headers: 100,
            h2_max_streams: 100,
            max_url_bytes: 8 * 1024,
            max_in_flight: None,
            adaptive_in_flight: true,
            queue_size: None,
            queue_timeout: Duration::from_secs(1),
            header_read_timeout: Duration::from_secs(10),
            upstream_idle_timeout: Duration::from_secs(4),
            upgrade_idle_timeout: Duration::from_secs(300),
            access_log: false,
            admin_on_main: true,
            edge_headers: Default::default(),
            backend_tls: Default::default(),
            redirect_http: None,
            send_proxy_protocol: false,
            ejection: EjectionConfig::default(),
            slow_start: Duration::from_secs(10),
            retry_budget_percent: 20,
            retry_budget_min_per_second: 3,
            rate_limit: RateLimitConfig::default(),
            rate_limit_redis: None,
            rate_limit_redis_prefix: "weir:ratelimit".into(),
            trusted_proxies: Vec::new(),
            admin_allow: Vec::new(),
            admin_loopback_only: false,
        }
    }

    /// Safe by default (Caddy keeps its admin API on localhost): with the
    /// admin API on a main listener that is not loopback (`listening`), and
    /// no `--admin-allow` saying who else may reach it, it answers loopback
    /// clients only. Returns where the admin surface is, for the start line.
    pub fn guard_admin(&mut self, listening: &[std::net::SocketAddr]) -> String {
        if !self.admin_on_main {
            return "the admin API is on --admin-listen only".into();
        }
        let public = listening.iter().any(|a| !a.ip().is_loopback());
        self.admin_loopback_only = public && self.admin_allow.is_empty();
        if self.admin_loopback_only {
            "admin API and /dashboard: loopback clients only (others' /lb/* but /lb/health/* and \
             /dashboard go to the backends; --admin-listen or --admin-allow to open them)"
                .into()
        } else if !self.admin_allow.is_empty() {
            "admin API and /dashboard: clients in --admin-allow only".into()
        } else {
            "admin API and /dashboard: on the main listener (loopback)".into()
        }
    }
}
