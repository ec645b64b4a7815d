//! Backends and the set the proxy selects from.

pub mod discovery;
pub(crate) mod dispatch;
pub(crate) mod health;
pub(crate) mod latency;
pub(crate) mod outlier;
pub(crate) mod selection;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use http::uri::{Authority, Scheme};
use serde::Serialize;
use tokio::sync::Notify;

use crate::admission::adaptive::AdaptiveLimit;
use crate::backends::latency::LatencyHistogram;

/// What a backend speaks, from its URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http://`: HTTP/1.1 over TCP (the fast path's).
    Http1,
    /// `https://`: TLS, then HTTP/2 or HTTP/1.1 as ALPN settles.
    Https,
    /// `h2c://`: HTTP/2 over TCP, by prior knowledge (gRPC servers).
    H2c,
}

/// One upstream API node, with the counters the strategies and stats read.
#[derive(Debug)]
pub struct Backend {
    /// `host:port`; also the backend's id in the admin API.
    pub authority: Authority,
    pub scheme: Scheme,
    /// How requests travel to it.
    pub protocol: Protocol,
    in_flight: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    healthy: AtomicBool,
    /// Draining: listed, but no new requests.
    draining: AtomicBool,
    consecutive_failures: AtomicU32,
    consecutive_successes: AtomicU32,
    /// Relative share under `weighted_round_robin` (and `consistent_hash`).
    pub weight: u32,
    /// Smooth weighted round robin's running weight; only touched under that
    /// selector's lock.
    pub(crate) smooth_weight: AtomicI64,
    /// Peak-EWMA latency in nanoseconds, and when it was last updated
    /// (nanoseconds since the process's first use of it).
    ewma_ns: AtomicU64,
    ewma_at: AtomicU64,
    /// Recent fast refusals ×1000, as of `refusals_at` (fading).
    refusals_milli: AtomicU64,
    refusals_at: AtomicU64,
    /// Woken when a request on this backend ends, for requests queued for a
    /// free slot; shared by every backend of one set.
    slot_freed: OnceLock<Arc<SlotFreed>>,
    /// Time to response headers, for p50/p99.
    pub latency: LatencyHistogram,
    /// The in-flight limit its response times call for (fed and used only
    /// without `max_in_flight`, with `adaptive_in_flight` on).
    pub adaptive: AdaptiveLimit,
    /// Failed requests in a row (passive health).
    consecutive_errors: AtomicU32,
    /// Ejected until this `clock_ns` (0: not ejected), and how often so far.
    ejected_until: AtomicU64,
    ejections: AtomicU32,
    ejected_length_ns: AtomicU64,
    /// When it last came back (health up, or its ejection ending), as
    /// `clock_ns`; 0 when it never left. Drives slow start.
    returned_at: AtomicU64,
    /// The name the node gives itself (its `X-Weir-Node` answer header), once seen.
    node_name: ArcSwapOption<String>,
}

/// Weights a backend may have.
pub const MAX_WEIGHT: u32 = 1000;
/// How fast peak-EWMA forgets: a sample's weight halves about every 7 s.
const EWMA_DECAY: Duration = Duration::from_secs(10);
/// What peak-EWMA assumes of a backend it has no sample of yet.
const EWMA_DEFAULT: Duration = Duration::from_millis(5);
/// What a fast refusal (429, or 503 with Retry-After) counts as: a refusal
/// must make a backend look loaded, not fast.
const REFUSAL_PENALTY: Duration = Duration::from_secs(1);
/// How fast the refusals least-connections and power-of-two-choices add to
/// a backend's load fade (e-fold time): a backend refusing 100/s looks about
/// 100 requests busier; one that stopped refusing is back in seconds.
const REFUSAL_FADE: Duration = Duration::from_secs(1);

/// Nanoseconds since the process first asked (a monotonic clock).
pub(crate) fn clock_ns() -> u64 {
    clock_ns_at(Instant::now())
}

/// [`clock_ns`] of an instant already read (one clock read serves several uses).
pub(crate) fn clock_ns_at(at: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    at.saturating_duration_since(*START.get_or_init(Instant::now))
        .as_nanos() as u64
}

/// A backend as `/lb/stats` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct BackendStats {
    pub id: String,
    pub url: String,
    /// The node's own name (`X-Weir-Node`), once it has answered.
    pub node: Option<String>,
    pub healthy: bool,
    pub ejected: bool,
    /// Times passive health ejected it since it joined the set.
    pub ejections: u64,
    pub draining: bool,
    pub requests: u64,
    pub in_flight: u64,
    /// The in-flight limit learnt from its latency (applies unless
    /// `--max-in-flight` is set or `--adaptive-in-flight false`).
    pub adaptive_in_flight_limit: u64,
    pub errors: u64,
    pub weight: u32,
    /// Peak-EWMA latency, in milliseconds.
    pub latency_ewma_ms: f64,
    /// Time to response headers since start, in milliseconds (absent before any).
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

impl Backend {
    /// Parses `SCHEME://host:port[=WEIGHT]`, SCHEME `http`, `https` (TLS,
    /// HTTP/2 when the backend offers it) or `h2c` (HTTP/2 without TLS); a
    /// bare `host:port` is taken as http.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (url, weight) = match spec.trim().rsplit_once('=') {
            Some((url, w)) => {
                let weight = w
                    .parse::<u32>()
                    .ok()
                    .filter(|w| (1..=MAX_WEIGHT).contains(w))
                    .ok_or_else(|| format!("backend {spec:?}: weight must be 1..={MAX_WEIGHT}"))?;
                (url, weight)
            }
            None => (spec.trim(), 1),
        };
        let url = url.trim().trim_end_matches('/');
        let with_scheme = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        let uri: http::Uri = with_scheme
            .parse()
            .map_err(|e| format!("invalid backend URL {url:?}: {e}"))?;
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        let protocol = match scheme.as_str() {
            "http" => Protocol::Http1,
            "https" => Protocol::Https,
            "h2c" => Protocol::H2c,
            other => {
                return Err(format!(
                    "backend {url:?}: {other}:// is not http://, https:// or h2c://"
                ))
            }
        };
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!("backend {url:?}: a backend URL has no path"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("backend {url:?} has no host"))?;
        Ok(Backend {
            authority,
            scheme,
            protocol,
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            consecutive_failures: AtomicU32::new(0),
            consecutive_successes: AtomicU32::new(0),
            weight,
            smooth_weight: AtomicI64::new(0),
            ewma_ns: AtomicU64::new(0),
            ewma_at: AtomicU64::new(0),
            refusals_milli: AtomicU64::new(0),
            refusals_at: AtomicU64::new(0),
            slot_freed: OnceLock::new(),
            latency: LatencyHistogram::default(),
            adaptive: AdaptiveLimit::default(),
            consecutive_errors: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            ejected_length_ns: AtomicU64::new(0),
            returned_at: AtomicU64::new(0),
            node_name: ArcSwapOption::empty(),
        })
    }

    /// Feeds one response time into the peak-EWMA: a slower sample than the
    /// average takes over at once (peak), faster ones pull it down gradually.
    pub fn record_latency(&self, sample: Duration) {
        self.record_latency_at(sample, clock_ns());
    }

    /// [`Self::record_latency`] at `now` ([`clock_ns`]).
    pub(crate) fn record_latency_at(&self, sample: Duration, now: u64) {
        self.latency.record(sample);
        self.ewma_sample(sample, now);
    }

    fn ewma_sample(&self, sample: Duration, now: u64) {
        let sample_ns = sample.as_nanos().min(u128::from(u64::MAX)) as u64;
        let last = self.ewma_at.swap(now, Ordering::Relaxed);
        let current = self.ewma_ns.load(Ordering::Relaxed);
        let next = if current == 0 || sample_ns > current {
            sample_ns
        } else {
            let elapsed = now.saturating_sub(last) as f64;
            let keep = (-elapsed / EWMA_DECAY.as_nanos() as f64).exp();
            (current as f64 * keep + sample_ns as f64 * (1.0 - keep)) as u64
        };
        self.ewma_ns.store(next, Ordering::Relaxed);
    }

    /// A fast refusal (429, or 503 with Retry-After): load, not speed. Charged
    /// to the EWMA only; the histogram keeps the real response time.
    pub fn record_refusal(&self) {
        let now = clock_ns();
        self.ewma_sample(REFUSAL_PENALTY, now);
        // Approximate under races (two refusals at once may count as one):
        // it is a bias, not a ledger.
        let next = self.refusals_at(now) + 1.0;
        self.refusals_milli
            .store((next * 1000.0) as u64, Ordering::Relaxed);
        self.refusals_at.store(now, Ordering::Relaxed);
    }

    fn refusals_at(&self, now: u64) -> f64 {
        let milli = self.refusals_milli.load(Ordering::Relaxed);
        if milli == 0 {
            return 0.0;
        }
        let since = now.saturating_sub(self.refusals_at.load(Ordering::Relaxed)) as f64;
        milli as f64 / 1000.0 * (-since / REFUSAL_FADE.as_nanos() as f64).exp()
    }

    /// What least-connections and power-of-two-choices compare: requests in
    /// flight plus recent fast refusals (429, or 503 with Retry-After), so a
    /// backend that refuses quickly does not look idle and attract more
    /// traffic (the bias Linkerd had to add).
    pub fn load(&self) -> f64 {
        self.in_flight() as f64 + self.refusals_at(clock_ns())
    }

    /// Peak-EWMA latency, or a default before the first sample. A backend
    /// that gets no traffic sees its estimate decay with time (as Finagle's
    /// does), so one that was slow is tried again eventually rather than
    /// shunned forever.
    pub fn latency_ewma(&self) -> Duration {
        match self.ewma_ns.load(Ordering::Relaxed) {
            0 => EWMA_DEFAULT,
            ns => {
                let idle = clock_ns().saturating_sub(self.ewma_at.load(Ordering::Relaxed)) as f64;
                let keep = (-idle / EWMA_DECAY.as_nanos() as f64).exp();
                Duration::from_nanos((ns as f64 * keep) as u64)
            }
        }
    }

    /// Expected cost of one more request: latency × (requests in flight + 1).
    pub fn ewma_cost(&self) -> f64 {
        self.latency_ewma().as_secs_f64() * (self.in_flight() + 1) as f64
    }

    pub fn id(&self) -> &str {
        self.authority.as_str()
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Out of rotation after failing requests (see `outlier`).
    pub fn is_ejected(&self) -> bool {
        // No clock read for a backend never ejected.
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && until > clock_ns()
    }

    /// Whether the selector may pick it: healthy, not ejected.
    pub fn is_available(&self) -> bool {
        self.is_healthy() && !self.is_ejected()
    }

    /// Slow start: the share of the traffic it would get that a backend which
    /// just came back is given — rising linearly from 10% to all of it over
    /// `window`, so a cold or barely recovered node is not flooded at once.
    pub fn slow_start_share(&self, window: Duration) -> f64 {
        let returned = self.returned_at.load(Ordering::Relaxed);
        if returned == 0 || window.is_zero() {
            return 1.0;
        }
        let now = clock_ns();
        if now < returned {
            return 1.0;
        }
        let elapsed = (now - returned) as f64 / window.as_nanos() as f64;
        elapsed.clamp(0.1, 1.0)
    }

    pub(crate) fn note_failure(&self) -> u32 {
        self.consecutive_errors.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn note_success(&self) {
        if self.consecutive_errors.load(Ordering::Relaxed) != 0 {
            self.consecutive_errors.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn note_ejection(&self) -> u32 {
        self.ejections.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn eject_for(&self, length: Duration) {
        let ns = length.as_nanos().min(u128::from(u64::MAX / 2)) as u64;
        self.ejected_length_ns.store(ns, Ordering::Relaxed);
        // One reading for both: it is back exactly when the ejection ends
        // (two readings let a slow start begin "in the future").
        let until = clock_ns() + ns;
        self.ejected_until.store(until, Ordering::Relaxed);
        self.returned_at.store(until, Ordering::Relaxed);
        self.consecutive_errors.store(0, Ordering::Relaxed);
    }

    /// Length of the latest ejection.
    pub fn ejected_for(&self) -> Duration {
        Duration::from_nanos(self.ejected_length_ns.load(Ordering::Relaxed))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Relaxed);
    }

    /// Counts a request as started; the guard counts it finished when dropped
    /// (after the response body has been streamed, or on error).
    pub fn start_request(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        crate::server::spread::count_request();
        InFlightGuard(self.clone())
    }

    /// Like [`Backend::start_request`], but only while fewer than `cap`
    /// requests are in flight — checked and counted in one atomic step, so two
    /// requests racing for the last slot cannot both take it.
    pub fn try_start_request(self: &Arc<Self>, cap: u64) -> Option<InFlightGuard> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        crate::server::spread::count_request();
        Some(InFlightGuard(self.clone()))
    }

    /// Remembers the node's name from an answer's `X-Weir-Node` header
    /// (a read and compare per answer; a write only when it changes).
    pub fn note_node_name(&self, name: &[u8]) {
        let current = self.node_name.load();
        if current.as_deref().map(String::as_bytes) != Some(name) {
            if let Ok(name) = std::str::from_utf8(name) {
                self.node_name.store(Some(Arc::new(name.to_string())));
            }
        }
    }

    pub fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A health check (or a connect failure) failed; after `fall` in a row the
    /// backend is marked down.
    pub fn record_check_failure(&self, fall: u32) {
        self.consecutive_successes.store(0, Ordering::Relaxed);
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= fall && self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(backend = %self.authority, "backend marked down");
        }
    }

    /// The backend refused a connection: down at once, no need to wait for checks.
    pub fn mark_down(&self) {
        self.consecutive_successes.store(0, Ordering::Relaxed);
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(backend = %self.authority, "backend unreachable; marked down");
        }
    }

    /// A health check passed; after `rise` in a row a down backend is up again.
    pub fn record_check_success(&self, rise: u32) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let successes = self.consecutive_successes.fetch_add(1, Ordering::Relaxed) + 1;
        if successes >= rise && !self.healthy.swap(true, Ordering::Relaxed) {
            self.returned_at.store(clock_ns(), Ordering::Relaxed);
            tracing::info!(backend = %self.authority, "backend marked up");
        }
    }

    /// Requests sent to it so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> BackendStats {
        BackendStats {
            id: self.id().to_string(),
            url: format!("{}://{}", self.scheme, self.authority),
            node: self.node_name.load_full().map(|n| n.as_ref().clone()),
            healthy: self.is_healthy(),
            ejected: self.is_ejected(),
            ejections: u64::from(self.ejections.load(Ordering::Relaxed)),
            draining: self.is_draining(),
            requests: self.requests.load(Ordering::Relaxed),
            in_flight: self.in_flight(),
            adaptive_in_flight_limit: self.adaptive.limit(),
            errors: self.errors.load(Ordering::Relaxed),
            weight: self.weight,
            latency_ewma_ms: self.latency_ewma().as_secs_f64() * 1000.0,
            latency_p50_ms: self.latency.quantile(0.5).map(|d| d.as_secs_f64() * 1000.0),
            latency_p99_ms: self
                .latency
                .quantile(0.99)
                .map(|d| d.as_secs_f64() * 1000.0),
        }
    }
}

/// Decrements a backend's in-flight count when dropped.
#[derive(Debug)]
pub struct InFlightGuard(Arc<Backend>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(freed) = self.0.slot_freed.get() {
            // Only when someone waits: no write to the shared line otherwise.
            if freed.waiting.load(Ordering::Acquire) > 0 {
                freed.notify.notify_one();
            }
        }
    }
}

/// The current backends. Readers (every request) load a snapshot without
/// locking; admin changes swap in a new list.
#[derive(Debug, Default)]
pub struct BackendSet {
    backends: ArcSwap<Vec<Arc<Backend>>>,
    slot_freed: Arc<SlotFreed>,
}

/// Wakes requests queued for a free slot when a request on any backend ends.
#[derive(Debug, Default)]
struct SlotFreed {
    notify: Notify,
    /// Requests queued; zero spares every finished request a notify.
    waiting: AtomicU64,
}

/// Counts a queued request until dropped.
pub struct QueuedGuard(Arc<SlotFreed>);

impl Drop for QueuedGuard {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl BackendSet {
    pub fn new(backends: Vec<Arc<Backend>>) -> Self {
        let slot_freed = Arc::new(SlotFreed::default());
        for b in &backends {
            let _ = b.slot_freed.set(slot_freed.clone());
        }
        BackendSet {
            backends: ArcSwap::from_pointee(backends),
            slot_freed,
        }
    }

    /// Marks a request as waiting for a slot (see [`Self::slot_freed`]);
    /// must be taken before checking for a free slot, so a slot freed between
    /// the check and the wait is not missed.
    pub fn queue(&self) -> QueuedGuard {
        self.slot_freed.waiting.fetch_add(1, Ordering::AcqRel);
        QueuedGuard(self.slot_freed.clone())
    }

    /// Completes when some request on some backend ends (or spuriously),
    /// while a `QueuedGuard` is held.
    pub async fn slot_freed(&self) {
        self.slot_freed.notify.notified().await
    }

    /// Wakes every queued request, to judge its wait again.
    pub fn wake_queued(&self) {
        self.slot_freed.notify.notify_waiters();
    }

    pub fn snapshot(&self) -> Arc<Vec<Arc<Backend>>> {
        self.backends.load_full()
    }

    /// Whether every backend speaks plain HTTP/1.1 (the fast path's).
    pub fn all_http1(&self) -> bool {
        self.backends
            .load()
            .iter()
            .all(|b| b.protocol == Protocol::Http1)
    }

    /// Adds a backend unless one with the same id exists; returns whether it was added.
    pub fn add(&self, backend: Backend) -> bool {
        let _ = backend.slot_freed.set(self.slot_freed.clone());
        let backend = Arc::new(backend);
        let mut added = false;
        self.backends.rcu(|current| {
            added = !current.iter().any(|b| b.id() == backend.id());
            let mut next = current.as_ref().clone();
            if added {
                next.push(backend.clone());
            }
            next
        });
        added
    }

    /// Removes a backend by id; returns whether it was there.
    pub fn remove(&self, id: &str) -> bool {
        let mut removed = false;
        self.backends.rcu(|current| {
            let next: Vec<_> = current.iter().filter(|b| b.id() != id).cloned().collect();
            removed = next.len() != current.len();
            next
        });
        removed
    }
}
