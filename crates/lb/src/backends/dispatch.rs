//! Dispatch: which backend answers a request — the strategy's pick among
//! healthy backends, a bounded wait when all are at capacity, the affinity
//! key — and the bookkeeping of its answer, shared by both paths.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use crate::backends::outlier;
use crate::backends::selection::HashKey;
use crate::backends::selection::{hash_key as hash_key_bytes, Pick};
use crate::backends::{clock_ns, InFlightGuard};
use crate::state::Lb;
use crate::Backend;

/// What the health and load bookkeeping reads of a backend's answer.
pub(crate) struct Answer<'a> {
    pub status: u16,
    pub retry_after: bool,
    /// Its `X-Weir-Node`.
    pub node_name: Option<&'a [u8]>,
}

/// Health and load bookkeeping for an answer, on either path: the node's
/// name, a fast refusal (429, or 503 with Retry-After) counted as load, and a
/// 5xx as a failure toward ejection.
pub(crate) fn note_answer(
    lb: &Lb,
    backends: &[Arc<Backend>],
    backend: &Backend,
    answer: Answer<'_>,
) {
    if let Some(name) = answer.node_name {
        backend.note_node_name(name);
    }
    if answer.status == 429 || (answer.status == 503 && answer.retry_after) {
        // A fast refusal is load, not speed.
        backend.record_refusal();
    }
    if answer.status >= 500 {
        backend.record_error();
        outlier::record_failure(&lb.config.ejection, backends, backend, false);
    } else {
        backend.note_success();
    }
}

/// Every backend is at capacity and the wait queue is full (or the wait ran
/// out): the request is refused with 503 and Retry-After.
pub(crate) struct Overloaded;

/// A backend by [`pick`]; when every backend is at its in-flight limit,
/// waits in a short bounded queue for a slot, and refuses at once when the
/// queue is full or the wait runs out — latency stays bounded under overload
/// instead of growing with it. While the queue stands (it overflowed and
/// most waits are long: [`crate::admission::sojourn`]), a wait is cut
/// to [`STANDING_WAIT`]: a queue that does not drain only adds latency, so
/// the requests it cannot serve soon are better refused now (CoDel's
/// reasoning).
pub(crate) async fn pick_or_queue<'a>(
    lb: &Lb,
    backends: &'a [Arc<Backend>],
    tried: &[&Arc<Backend>],
    key: u64,
) -> Result<Option<(&'a Arc<Backend>, InFlightGuard)>, Overloaded> {
    // A slot freed between a failed reservation and the look at the caps
    // must be taken, not read as "no backend" (a 502 under load).
    for _ in 0..RESERVE_TRIES {
        if let Some(b) = reserve(lb, backends, tried, key) {
            return Ok(Some(b));
        }
        let saturated = backends
            .iter()
            .any(|b| !b.is_draining() && cap(lb, b).is_some_and(|cap| b.in_flight() >= cap));
        if saturated {
            return queue(lb, backends, tried, key).await;
        }
    }
    Ok(None)
}

/// Reservations tried while the caps read as free, before "no backend".
const RESERVE_TRIES: usize = 3;

/// Every backend is at its cap: waits in the bounded queue for a slot.
async fn queue<'a>(
    lb: &Lb,
    backends: &'a [Arc<Backend>],
    tried: &[&Arc<Backend>],
    key: u64,
) -> Result<Option<(&'a Arc<Backend>, InFlightGuard)>, Overloaded> {
    let ahead = lb.queued.fetch_add(1, Ordering::AcqRel);
    if ahead >= queue_room(lb, backends) {
        lb.queued.fetch_sub(1, Ordering::AcqRel);
        if lb.queue_sojourn.overflow() {
            lb.backends.wake_queued();
        }
        lb.rejected_overload.fetch_add(1, Ordering::Relaxed);
        return Err(Overloaded);
    }
    let _queued = lb.backends.queue();
    let entered = tokio::time::Instant::now();
    let picked = loop {
        let freed = lb.backends.slot_freed();
        if let Some(b) = reserve(lb, backends, tried, key) {
            break Some(b);
        }
        // Judged again at every wake: a request queued before the queue
        // stood must not keep its long wait once it does.
        let wait = if lb.queue_sojourn.standing(clock_ns()) {
            STANDING_WAIT.min(lb.config.queue_timeout)
        } else {
            lb.config.queue_timeout
        };
        if tokio::time::timeout_at(entered + wait, freed)
            .await
            .is_err()
        {
            break reserve(lb, backends, tried, key);
        }
    };
    if lb.queue_sojourn.record(entered.elapsed(), clock_ns()) {
        lb.backends.wake_queued();
    }
    lb.queued.fetch_sub(1, Ordering::AcqRel);
    match picked {
        Some(b) => Ok(Some(b)),
        None => {
            lb.rejected_overload.fetch_add(1, Ordering::Relaxed);
            Err(Overloaded)
        }
    }
}

/// How many requests may wait for a slot: `queue_size` when set; else as
/// many as the backends answer within `queue_timeout` at their recent pace
/// (each one's cap over its response time, Little's law), at least
/// [`DEFAULT_QUEUE_SIZE`] and at most [`QUEUE_HARD_MAX`]. A burst the
/// backends clear within the wait is queued, not refused (nginx and HAProxy
/// refuse none); a backend answering 100 a second is not made to hold a
/// queue it would take seconds to clear.
fn queue_room(lb: &Lb, backends: &[Arc<Backend>]) -> usize {
    if let Some(size) = lb.config.queue_size {
        return size;
    }
    let pace: f64 = backends
        .iter()
        .filter(|b| b.is_available() && !b.is_draining())
        .filter_map(|b| {
            let answered_in = b.latency_ewma().as_secs_f64().max(MIN_RESPONSE_TIME);
            cap(lb, b).map(|cap| cap as f64 / answered_in)
        })
        .sum();
    let room = (pace * lb.config.queue_timeout.as_secs_f64()) as usize;
    room.clamp(DEFAULT_QUEUE_SIZE, QUEUE_HARD_MAX)
}

/// The least the queue holds without `queue_size`.
pub const DEFAULT_QUEUE_SIZE: usize = 256;
/// The most it holds without `queue_size`, whatever the backends' pace:
/// each waiting request holds its client connection's state.
const QUEUE_HARD_MAX: usize = 4096;
/// Response times below this are not trusted for a pace (0.1 ms).
const MIN_RESPONSE_TIME: f64 = 1e-4;

/// While the queue stands ([`crate::admission::sojourn`]), a request waits at most
/// this long for a slot.
const STANDING_WAIT: Duration = crate::admission::sojourn::TARGET;

/// How many requests `b` may have in flight: `max_in_flight` when
/// configured, else its adaptive limit (or none, with that turned off).
fn cap(lb: &Lb, b: &Backend) -> Option<u64> {
    lb.config
        .max_in_flight
        .or_else(|| learns_limits(lb).then(|| b.adaptive.limit()))
}

/// Whether each backend's in-flight limit is learnt from its answers (no
/// `max_in_flight`, `adaptive_in_flight` on).
pub(crate) fn learns_limits(lb: &Lb) -> bool {
    lb.config.max_in_flight.is_none() && lb.config.adaptive_in_flight
}

/// A backend by [`pick`], with its in-flight slot taken. Under a cap,
/// another request may take the slot between the pick and the reservation;
/// then it picks again.
fn reserve<'a>(
    lb: &Lb,
    backends: &'a [Arc<Backend>],
    tried: &[&Arc<Backend>],
    key: u64,
) -> Option<(&'a Arc<Backend>, InFlightGuard)> {
    for _ in 0..backends.len().max(1) * 2 {
        let b = pick(lb, backends, tried, key)?;
        match cap(lb, b) {
            None => return Some((b, b.start_request())),
            Some(cap) => {
                if let Some(guard) = b.try_start_request(cap) {
                    return Some((b, guard));
                }
            }
        }
    }
    None
}

/// A healthy backend not tried yet; if every backend is marked down, any untried
/// one (a stale health verdict beats a certain 502).
fn pick<'a>(
    lb: &Lb,
    backends: &'a [Arc<Backend>],
    tried: &[&Arc<Backend>],
    key: u64,
) -> Option<&'a Arc<Backend>> {
    let active = lb.strategy.load();
    // A draining backend gets nothing new, even when it is the last one left.
    let untried = |b: &Backend| {
        !b.is_draining()
            && cap(lb, b).is_none_or(|cap| b.in_flight() < cap)
            && !tried.iter().any(|t| std::ptr::eq(t.as_ref(), b))
    };
    let slow_start = lb.config.slow_start;
    let healthy_untried = |b: &Backend| {
        b.is_available()
            && untried(b)
            && (slow_start.is_zero() || {
                let share = b.slow_start_share(slow_start);
                share >= 1.0 || rand::random::<f64>() < share
            })
    };
    active
        .selector
        .select(
            backends,
            &Pick {
                key,
                eligible: &healthy_untried,
            },
        )
        .or_else(|| {
            active.selector.select(
                backends,
                &Pick {
                    key,
                    eligible: &untried,
                },
            )
        })
        .map(|i| &backends[i])
}

/// The request's affinity key for `consistent_hash`: the named header's value
/// when configured and present, else the client's IP.
pub(crate) fn affinity_key(hash_key: &HashKey, headers: &HeaderMap, peer: SocketAddr) -> u64 {
    if let HashKey::Header(name) = hash_key {
        if let Some(v) = headers.get(name) {
            return hash_key_bytes(v.as_bytes());
        }
    }
    ip_key(peer.ip())
}

/// A client IP's `consistent_hash` key.
pub(crate) fn ip_key(ip: std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(ip) => hash_key_bytes(&ip.octets()),
        std::net::IpAddr::V6(ip) => hash_key_bytes(&ip.octets()),
    }
}
