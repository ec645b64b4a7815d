//! The load balancer's settings (`BalancerArgs`), its edge (`TlsListenArgs`,
//! certificates by SNI) and `weir lb`'s command (`LbArgs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
pub use weir_lb::BalancerArgs;

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
    pub tls_min_version: weir_lb::edge::tls::TlsVersion,
}

impl TlsListenArgs {
    /// The TLS listener's certificates; an error names the flag that is
    /// missing.
    pub fn tls_settings(&self) -> anyhow::Result<Option<weir_lb::edge::tls::TlsSettings>> {
        let default = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(weir_lb::edge::tls::CertFiles {
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
            (Some(_), true) => Ok(Some(weir_lb::edge::tls::TlsSettings {
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
    pub files: weir_lb::edge::tls::CertFiles,
}

impl std::str::FromStr for SniCertificate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parsed = s.split_once('=').and_then(|(name, files)| {
            let (cert, key) = files.split_once(':')?;
            let ok = !name.is_empty() && !cert.is_empty() && !key.is_empty();
            ok.then(|| SniCertificate {
                name: name.to_string(),
                files: weir_lb::edge::tls::CertFiles {
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
    pub fn backend_tls(&self) -> weir_lb::upstream::tls::BackendTlsSettings {
        weir_lb::upstream::tls::BackendTlsSettings {
            ca: self.backend_ca.clone(),
            client_cert: match (&self.backend_client_cert, &self.backend_client_key) {
                (Some(cert), Some(key)) => Some(weir_lb::edge::tls::CertFiles {
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
}
