//! [`Lb`]: the load balancer's shared state, read by every part of it (the
//! accept loop, both forwarding paths, health checks, the admin API).

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::admin::throughput::Throughput;
use crate::admission::per_ip::PerIp;
use crate::admission::ratelimit::RateLimits;
use crate::admission::ratelimit_shared::SharedLimiter;
use crate::backends::outlier::RetryBudget;
use crate::backends::selection::ActiveStrategy;
use crate::backends::Protocol;
use crate::upstream::tls::BackendTls;
use crate::{Backend, BackendSet, LbConfig};

/// The load balancer's shared state.
pub struct Lb {
    pub config: LbConfig,
    pub backends: BackendSet,
    pub strategy: ArcSwap<ActiveStrategy>,
    pub rate_limits: RateLimits,
    /// Retries left this second.
    pub retry_budget: RetryBudget,
    /// Requests waiting for a backend slot.
    pub queued: AtomicUsize,
    /// How long requests wait in the queue: whether it stands.
    pub queue_sojourn: crate::admission::sojourn::Sojourn,
    /// Whether the lb itself runs late ([`crate::admission::lag`]).
    pub lag: Arc<crate::admission::lag::Lag>,
    /// Answers read while the lb ran late, kept from the adaptive limit: a
    /// count that grows under load says the lb's own CPU is the bottleneck.
    pub late_answers: AtomicU64,
    /// Requests refused with 503 because every backend was at capacity.
    pub rejected_overload: AtomicU64,
    /// Requests refused with 429 by the rate limits.
    pub rejected_rate_limit: AtomicU64,
    /// Requests refused with 502 because no backend could be picked (none
    /// configured, or every one down, ejected or draining).
    pub rejected_no_backend: AtomicU64,
    /// Wrong admin tokens per client IP.
    pub(crate) failed_logins: crate::admin::guard::FailedLogins,
    /// Changes made through the admin API, newest kept.
    pub(crate) audit: crate::admin::audit::AuditRing,
    /// Connections refused by `--max-connections-per-ip`.
    pub rejected_connections: AtomicU64,
    /// Open connections per client IP.
    pub(crate) per_ip: Arc<PerIp>,
    /// Requests per second over the last minute.
    pub throughput: Throughput,
    /// Rate limits shared through Redis, when configured.
    pub shared_limits: Option<SharedLimiter>,
    /// Set from the shutdown signal on: `/lb/health/ready` answers 503.
    pub draining: std::sync::atomic::AtomicBool,
    /// Upgraded connections being relayed; a drain waits for them.
    pub(crate) tunnels: tokio_util::task::TaskTracker,
    /// A permit per open client connection, shared by every listener and
    /// serving thread: `--max-connections` bounds the process, not each
    /// accept loop.
    pub(crate) connections: Arc<tokio::sync::Semaphore>,
    /// TLS termination, when certificates are configured.
    pub tls: Option<crate::edge::tls::Terminator>,
    /// TLS to `https://` backends.
    backend_tls: std::sync::OnceLock<Option<BackendTls>>,
    /// The serving threads' spread, when connections are spread over several.
    spread: std::sync::OnceLock<Arc<crate::server::spread::Spread>>,
    /// The backend URLs of the configuration last loaded (not those added
    /// by DNS or the admin API), for [`Lb::reload_backends`].
    configured: std::sync::Mutex<Vec<String>>,
}

/// What [`Lb::reload_backends`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BackendsReloaded {
    pub added: usize,
    pub removed: usize,
}

impl Lb {
    /// Marks the serving threads' spread, shown in `/lb/stats`.
    pub fn set_spread(&self, spread: Arc<crate::server::spread::Spread>) {
        let _ = self.spread.set(spread);
    }

    /// Each serving thread's connections and requests, when spread.
    pub fn thread_stats(&self) -> Option<Vec<crate::server::spread::ThreadStats>> {
        self.spread.get().map(|s| s.stats())
    }

    /// Validates the config and builds the state.
    pub fn new(config: LbConfig) -> Result<Arc<Self>, String> {
        let backends = config
            .backends
            .iter()
            .map(|url| Backend::parse(url).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        // Bad CA or client certificate files stop the lb at start.
        let backend_tls = std::sync::OnceLock::new();
        let wants_tls = backends.iter().any(|b| b.protocol == Protocol::Https)
            || config.backend_tls.ca.is_some()
            || config.backend_tls.client_cert.is_some();
        if wants_tls {
            let tls = BackendTls::load(&config.backend_tls).map_err(|e| e.to_string())?;
            let _ = backend_tls.set(Some(tls));
        }
        let rate_limits =
            RateLimits::new(config.rate_limit.clone(), config.trusted_proxies.clone())?;
        Ok(Arc::new(Lb {
            rate_limits,
            retry_budget: RetryBudget::new(
                config.retry_budget_percent,
                config.retry_budget_min_per_second,
            ),
            queued: AtomicUsize::new(0),
            queue_sojourn: crate::admission::sojourn::Sojourn::default(),
            lag: Default::default(),
            late_answers: AtomicU64::new(0),
            rejected_overload: AtomicU64::new(0),
            rejected_rate_limit: AtomicU64::new(0),
            rejected_no_backend: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            failed_logins: Default::default(),
            audit: Default::default(),
            per_ip: PerIp::new(config.max_connections_per_ip),
            throughput: Throughput::default(),
            shared_limits: config
                .rate_limit_redis
                .as_deref()
                .map(|url| SharedLimiter::new(url, &config.rate_limit_redis_prefix))
                .transpose()?,
            strategy: ArcSwap::from_pointee(ActiveStrategy::new(
                config.strategy,
                config.hash_key.clone(),
            )),
            backends: BackendSet::new(backends),
            draining: Default::default(),
            tunnels: Default::default(),
            connections: Arc::new(tokio::sync::Semaphore::new(
                config.connection_permits() as usize
            )),
            tls: config
                .tls
                .clone()
                .map(crate::edge::tls::Terminator::new)
                .transpose()
                .map_err(|e| e.to_string())?,
            backend_tls,
            configured: std::sync::Mutex::new(config.backends.clone()),
            spread: std::sync::OnceLock::new(),
            config,
        }))
    }

    /// Makes the configured backends `urls` (a reload): new ones are added,
    /// ones no longer listed removed (their requests in flight finish), a
    /// changed weight replaces the backend; backends from DNS or the admin
    /// API stay. A URL that does not parse changes nothing.
    pub fn reload_backends(&self, urls: &[String]) -> Result<BackendsReloaded, String> {
        let wanted = urls
            .iter()
            .map(|url| Backend::parse(url))
            .collect::<Result<Vec<_>, _>>()?;
        let mut configured = self.configured.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = BackendsReloaded::default();
        let previous: Vec<Backend> = configured
            .iter()
            .filter_map(|u| Backend::parse(u).ok())
            .collect();
        for old in &previous {
            let kept = wanted.iter().any(|b| {
                b.id() == old.id() && b.weight == old.weight && b.protocol == old.protocol
            });
            if !kept && self.backends.remove(old.id()) {
                report.removed += 1;
            }
        }
        for backend in wanted {
            if self.backends.add(backend) {
                report.added += 1;
            }
        }
        *configured = urls.to_vec();
        Ok(report)
    }

    /// The TLS client for `https://` backends: loaded at start when
    /// configured or needed, else on first use (a backend added later).
    pub(crate) fn backend_tls(&self) -> Option<&BackendTls> {
        self.backend_tls
            .get_or_init(|| match BackendTls::load(&self.config.backend_tls) {
                Ok(tls) => Some(tls),
                Err(e) => {
                    tracing::error!(error = %e, "no TLS client for https:// backends");
                    None
                }
            })
            .as_ref()
    }
}
