//! The load balancer's settings (`BalancerArgs`), its edge (`TlsListenArgs`,
//! certificates by SNI) and `weir lb`'s command (`LbArgs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use weir_lb::Strategy;

#[derive(Debug, Clone, Args)]
pub struct BalancerArgs {
    /// Selection strategy: round_robin, weighted_round_robin, least_connections,
    /// power_of_two_choices, consistent_hash or peak_ewma.
    #[arg(long, env = "WEIR_STRATEGY", default_value = "round_robin", value_parser = parse_strategy)]
    pub strategy: Strategy,
    /// What consistent_hash keys on: client_ip or header:NAME.
    #[arg(long, env = "WEIR_HASH_KEY", default_value = "client_ip")]
    pub hash_key: weir_lb::HashKey,
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
    /// Requests that may wait for a backend slot when all are full; past it, 503 at once.
    #[arg(long, env = "WEIR_QUEUE_SIZE", default_value_t = 256)]
    pub queue_size: usize,
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
    pub rate_limit_routes: Vec<weir_lb::ratelimit::RouteLimit>,
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

#[derive(Debug, Clone, Args)]
pub struct LbArgs {
    /// Where the load balancer listens.
    #[arg(long, env = "WEIR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Backend URLs with optional weights, comma-separated:
    /// http://10.0.0.1:8081=5,http://10.0.0.2:8081; https:// (TLS, HTTP/2
    /// when offered) and h2c:// (HTTP/2 without TLS, e.g. gRPC) too.
    #[arg(long, env = "WEIR_BACKENDS", value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Backends from DNS, comma-separated: NAME:PORT (every A/AAAA address
    /// of NAME, e.g. a headless Service) or an SRV name like
    /// _http._tcp.api.default.svc.cluster.local; resolved every --dns-interval.
    #[arg(long, env = "WEIR_BACKENDS_DNS", value_delimiter = ',')]
    pub backends_dns: Vec<weir_lb::DnsTarget>,
    /// How often --backends-dns names are resolved again.
    #[arg(long, env = "WEIR_DNS_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub dns_interval: Duration,
    /// The DNS server for --backends-dns (default: the system's resolv.conf).
    #[arg(long, env = "WEIR_DNS_SERVER")]
    pub dns_server: Option<SocketAddr>,
    /// Behind a balancer that sends the PROXY protocol (v1 or v2, e.g. a
    /// cloud NLB): each connection's header names the client, for rate
    /// limits, hashing and X-Forwarded-For; a connection without one is refused.
    #[arg(long, env = "WEIR_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,
    /// Open every connection to a backend with a PROXY v2 header naming the
    /// client (for backends behind which the client's address matters at
    /// the TCP level); such connections are not shared between clients.
    #[arg(long, env = "WEIR_SEND_PROXY_PROTOCOL")]
    pub send_proxy_protocol: bool,
    /// Serve the admin API (`/lb/*`) here instead of on --listen.
    #[arg(long, env = "WEIR_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Serving threads, each with its own runtime and listener (0: one per core).
    #[arg(long, env = "WEIR_LB_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// On SIGTERM, answer `/lb/health/ready` with 503 and keep serving this
    /// long before closing the listener, so whatever routes to this process
    /// stops first (e.g. 5s behind a Kubernetes Service).
    #[arg(long, env = "WEIR_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
    /// Restarts that drop nothing: started with this flag, the lb takes the
    /// listening sockets of the lb already listening at this Unix socket
    /// (an older binary), serves on them, and that one drains and exits;
    /// then it listens here for its own successor.
    #[arg(long, env = "WEIR_HANDOVER_SOCKET")]
    pub handover_socket: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsListenArgs,
    /// PEM certificates that `https://` backends' certificates must lead to
    /// (default: the system's roots).
    #[arg(long, env = "WEIR_BACKEND_CA")]
    pub backend_ca: Option<PathBuf>,
    /// A client certificate (PEM) for `https://` backends that require one
    /// (mutual TLS).
    #[arg(
        long,
        env = "WEIR_BACKEND_CLIENT_CERT",
        requires = "backend_client_key"
    )]
    pub backend_client_cert: Option<PathBuf>,
    /// The private key (PEM) of --backend-client-cert.
    #[arg(
        long,
        env = "WEIR_BACKEND_CLIENT_KEY",
        requires = "backend_client_cert"
    )]
    pub backend_client_key: Option<PathBuf>,
    /// Answer plain HTTP with a 308 to the same URL on HTTPS, at this port
    /// (default: --tls-listen's); ACME challenges and the admin API are
    /// still served over plain HTTP.
    #[arg(long, env = "WEIR_REDIRECT_HTTP", num_args = 0..=1, default_missing_value = "0", requires = "tls_listen")]
    pub redirect_http: Option<u16>,
    /// Strict-Transport-Security on answers over TLS; `--hsts` alone sends
    /// `max-age=31536000`.
    #[arg(long, env = "WEIR_HSTS", num_args = 0..=1, default_missing_value = "max-age=31536000")]
    pub hsts: Option<String>,
    /// A header added to every proxied answer that lacks it, as
    /// `NAME: VALUE`; repeatable.
    #[arg(long = "add-header", env = "WEIR_ADD_HEADER")]
    pub add_headers: Vec<String>,
    /// Add X-Content-Type-Options: nosniff, X-Frame-Options: SAMEORIGIN and
    /// Referrer-Policy: strict-origin-when-cross-origin to answers that lack them.
    #[arg(long, env = "WEIR_SECURITY_HEADERS")]
    pub security_headers: bool,
    #[command(flatten)]
    pub balancer: BalancerArgs,
}

/// HTTPS beside plain HTTP: where, and with which certificates (`weir lb`
/// and `weir up`).
#[derive(Debug, Clone, Args)]
pub struct TlsListenArgs {
    /// Also serve HTTPS here (HTTP/1.1 and, by ALPN, HTTP/2), with
    /// --tls-cert/--tls-key or --tls certificates.
    #[arg(long, env = "WEIR_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,
    /// The certificate chain (PEM; RSA or ECDSA) for clients that name no
    /// other certificate's server. Reloaded on SIGHUP and when the file changes.
    #[arg(long, env = "WEIR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "WEIR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A certificate by server name (SNI): NAME=CERT:KEY, NAME may be
    /// *.example.com; repeatable or comma-separated.
    #[arg(long = "tls", env = "WEIR_TLS", value_delimiter = ',')]
    pub tls_by_name: Vec<SniCertificate>,
    /// The oldest TLS version clients may use: 1.2 or 1.3.
    #[arg(long, env = "WEIR_TLS_MIN_VERSION", default_value = "1.2")]
    pub tls_min_version: weir_lb::tls::TlsVersion,
}

impl TlsListenArgs {
    /// The TLS listener's certificates; an error names the flag that is
    /// missing.
    pub fn tls_settings(&self) -> anyhow::Result<Option<weir_lb::tls::TlsSettings>> {
        let default = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(weir_lb::tls::CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        let has_certificates = default.is_some() || !self.tls_by_name.is_empty();
        match (self.tls_listen, has_certificates) {
            (None, false) => Ok(None),
            (None, true) => {
                anyhow::bail!("--tls-listen: certificates are given but no TLS listener")
            }
            (Some(_), false) => {
                anyhow::bail!(
                    "--tls-listen: needs --tls-cert and --tls-key, or --tls NAME=CERT:KEY"
                )
            }
            (Some(_), true) => Ok(Some(weir_lb::tls::TlsSettings {
                default,
                by_name: self
                    .tls_by_name
                    .iter()
                    .map(|c| (c.name.clone(), c.files.clone()))
                    .collect(),
                min_version: self.tls_min_version,
            })),
        }
    }
}

/// `--tls NAME=CERT:KEY`.
#[derive(Debug, Clone)]
pub struct SniCertificate {
    pub name: String,
    pub files: weir_lb::tls::CertFiles,
}

impl std::str::FromStr for SniCertificate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parsed = s.split_once('=').and_then(|(name, files)| {
            let (cert, key) = files.split_once(':')?;
            let ok = !name.is_empty() && !cert.is_empty() && !key.is_empty();
            ok.then(|| SniCertificate {
                name: name.to_string(),
                files: weir_lb::tls::CertFiles {
                    cert: cert.into(),
                    key: key.into(),
                },
            })
        });
        parsed.ok_or_else(|| format!("{s:?} is not NAME=CERT:KEY"))
    }
}

impl LbArgs {
    /// How `https://` backends are verified and what the lb shows them.
    pub fn backend_tls(&self) -> weir_lb::upstream_tls::BackendTlsSettings {
        weir_lb::upstream_tls::BackendTlsSettings {
            ca: self.backend_ca.clone(),
            client_cert: match (&self.backend_client_cert, &self.backend_client_key) {
                (Some(cert), Some(key)) => Some(weir_lb::tls::CertFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
        }
    }

    /// The headers added to answers and the redirect of plain HTTP; an
    /// error names the flag.
    pub fn edge_settings(
        &self,
    ) -> anyhow::Result<(
        weir_lb::edge::EdgeHeaders,
        Option<weir_lb::edge::HttpsRedirect>,
    )> {
        use weir_lb::edge;
        let mut added = Vec::new();
        if self.security_headers {
            added.extend(edge::SECURITY_HEADERS.iter().map(|(name, value)| {
                (
                    http::HeaderName::from_static(name),
                    http::HeaderValue::from_static(value),
                )
            }));
        }
        for header in &self.add_headers {
            let (name, value) =
                edge::parse_header(header).map_err(|e| anyhow::anyhow!("--add-header: {e}"))?;
            added.retain(|(n, _)| *n != name);
            added.push((name, value));
        }
        let hsts = match &self.hsts {
            Some(v) if v.trim_start().to_ascii_lowercase().starts_with("max-age=") => Some(
                http::HeaderValue::from_str(v)
                    .map_err(|_| anyhow::anyhow!("--hsts: {v:?} is not a header value"))?,
            ),
            Some(v) => anyhow::bail!("--hsts: {v:?} does not start with max-age=SECONDS"),
            None => None,
        };
        let redirect = match self.redirect_http {
            None => None,
            Some(0) => match self.tls.tls_listen.map(|a| a.port()) {
                Some(port) if port != 0 => Some(edge::HttpsRedirect { port }),
                _ => anyhow::bail!(
                    "--redirect-http: name the HTTPS port (--tls-listen has none fixed)"
                ),
            },
            Some(port) => Some(edge::HttpsRedirect { port }),
        };
        Ok((edge::EdgeHeaders::new(added, hsts), redirect))
    }
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    s.parse()
}

fn parse_route_limit(s: &str) -> Result<weir_lb::ratelimit::RouteLimit, String> {
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
    Ok(weir_lb::ratelimit::RouteLimit {
        method,
        path_prefix: prefix.to_string(),
        policy: weir_lb::ratelimit::RatePolicy { per_second, burst },
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

    pub fn config(&self, backends: Vec<String>, admin_token: String) -> weir_lb::LbConfig {
        let mut config = weir_lb::LbConfig::new(backends);
        config.strategy = self.strategy;
        config.hash_key = self.hash_key.clone();
        config.admin_token = admin_token;
        config.health_interval = self.health_interval;
        config.rate_limit = weir_lb::ratelimit::RateLimitConfig {
            default: self
                .rate_limit
                .map(|per_second| weir_lb::ratelimit::RatePolicy {
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
    use crate::config::{Cli, Command};
    fn lb_args(flags: &[&str]) -> LbArgs {
        use clap::Parser;
        let argv = ["weir", "lb", "--backends", "http://127.0.0.1:1"];
        let cli = Cli::try_parse_from(argv.iter().chain(flags)).unwrap();
        match cli.command {
            Command::Lb(args) => *args,
            other => panic!("not lb: {other:?}"),
        }
    }
    #[test]
    fn edge_flags_build_headers_and_the_redirect_or_name_the_bad_flag() {
        let args = lb_args(&[
            "--tls-listen",
            "0.0.0.0:8443",
            "--redirect-http",
            "--hsts",
            "--security-headers",
            "--add-header",
            "X-Frame-Options: DENY",
        ]);
        let (headers, redirect) = args.edge_settings().unwrap();
        assert_eq!(redirect, Some(weir_lb::edge::HttpsRedirect { port: 8443 }));
        let tls: Vec<_> = headers
            .for_connection(true)
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        assert!(tls.contains(&"strict-transport-security: max-age=31536000".to_string()));
        assert!(
            tls.contains(&"x-frame-options: DENY".to_string()),
            "{tls:?}"
        );
        assert!(!tls.contains(&"x-frame-options: SAMEORIGIN".to_string()));
        assert!(tls.contains(&"x-content-type-options: nosniff".to_string()));
        assert_eq!(headers.for_connection(false).len(), tls.len() - 1);

        let public = lb_args(&["--tls-listen", "0.0.0.0:8443", "--redirect-http", "443"]);
        assert_eq!(
            public.edge_settings().unwrap().1,
            Some(weir_lb::edge::HttpsRedirect { port: 443 })
        );
        let err = |flags: &[&str]| lb_args(flags).edge_settings().unwrap_err().to_string();
        assert!(err(&["--hsts", "1 year"]).starts_with("--hsts:"));
        assert!(err(&["--add-header", "no colon"]).starts_with("--add-header:"));
        assert!(err(&["--add-header", "Connection: x"]).starts_with("--add-header:"));
        assert!(err(&["--tls-listen", "127.0.0.1:0", "--redirect-http"])
            .starts_with("--redirect-http:"));
    }
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
