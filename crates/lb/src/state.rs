//! [`Lb`]: the load balancer's shared state, read by every part of it (the
//! accept loop, both forwarding paths, health checks, the admin API).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::body::Body;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::outlier::RetryBudget;
use crate::per_ip::PerIp;
use crate::ratelimit::RateLimits;
use crate::ratelimit_shared::SharedLimiter;
use crate::selection::ActiveStrategy;
use crate::throughput::Throughput;
use crate::{Backend, BackendSet, LbConfig};

/// The load balancer's shared state.
pub struct Lb {
    pub config: LbConfig,
    pub backends: BackendSet,
    pub strategy: ArcSwap<ActiveStrategy>,
    /// Tells this balancer's per-thread connection pools apart.
    id: u64,
    pub rate_limits: RateLimits,
    /// Retries left this second.
    pub retry_budget: RetryBudget,
    /// Requests waiting for a backend slot.
    pub queued: AtomicUsize,
    /// How long requests wait in the queue: whether it stands.
    pub queue_sojourn: crate::sojourn::Sojourn,
    /// Requests refused with 503 because every backend was at capacity.
    pub rejected_overload: AtomicU64,
    /// Requests refused with 429 by the rate limits.
    pub rejected_rate_limit: AtomicU64,
    /// Wrong admin tokens per client IP.
    pub(crate) failed_logins: crate::admin_guard::FailedLogins,
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
    /// TLS termination, when certificates are configured.
    pub tls: Option<crate::tls::Terminator>,
}

impl Lb {
    /// Validates the config and builds the state.
    pub fn new(config: LbConfig) -> Result<Arc<Self>, String> {
        let backends = config
            .backends
            .iter()
            .map(|url| Backend::parse(url).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let rate_limits =
            RateLimits::new(config.rate_limit.clone(), config.trusted_proxies.clone())?;
        Ok(Arc::new(Lb {
            rate_limits,
            retry_budget: RetryBudget::new(
                config.retry_budget_percent,
                config.retry_budget_min_per_second,
            ),
            queued: AtomicUsize::new(0),
            queue_sojourn: crate::sojourn::Sojourn::default(),
            rejected_overload: AtomicU64::new(0),
            rejected_rate_limit: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            failed_logins: Default::default(),
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
            tls: config
                .tls
                .clone()
                .map(crate::tls::Terminator::new)
                .transpose()
                .map_err(|e| e.to_string())?,
            config,
            id: NEXT_LB_ID.fetch_add(1, Ordering::Relaxed),
        }))
    }

    /// This thread's pooled keep-alive client to the backends. Each thread has
    /// its own pool, so a request and its upstream connection stay on one
    /// thread: no lock shared across threads, no cross-thread wake-ups.
    pub fn client(&self) -> Client<HttpConnector, Body> {
        CLIENTS.with(|clients| {
            clients
                .borrow_mut()
                .entry(self.id)
                .or_insert_with(|| {
                    let mut connector = HttpConnector::new();
                    connector.set_nodelay(true);
                    connector.set_connect_timeout(Some(self.config.connect_timeout));
                    Client::builder(TokioExecutor::new())
                        .pool_max_idle_per_host(256)
                        .pool_idle_timeout(self.config.upstream_idle_timeout)
                        .pool_timer(TokioTimer::new())
                        .build(connector)
                })
                .clone()
        })
    }
}

static NEXT_LB_ID: AtomicU64 = AtomicU64::new(0);

type UpstreamClient = Client<HttpConnector, Body>;

thread_local! {
    static CLIENTS: std::cell::RefCell<std::collections::HashMap<u64, UpstreamClient>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}
