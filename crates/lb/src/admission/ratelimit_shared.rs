//! Rate limits shared by every lb through Redis (`--rate-limit-redis`): the
//! same GCRA as the local limiter, its one number per client — the
//! theoretical arrival time — kept in Redis and updated by one Lua script, so
//! N balancers give a client one budget, not N.
//!
//! Redis's own clock (`TIME`) is the only clock, so balancers whose clocks
//! disagree still agree on a client. If Redis cannot be reached the balancer
//! falls back to its local limiter (fail open to the per-lb limits, never to
//! no limits) and says so in its log.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use crate::admission::rate::RatePolicy;

/// GCRA in one step. KEYS[1]: the client's key. ARGV: emission interval and
/// burst. Answers {allowed, remaining, wait µs}.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, 0, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / interval), 0}
"#;

/// What Redis decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedDecision {
    pub allowed: bool,
    /// Requests left in the burst after this one.
    pub remaining: u32,
    /// When limited: how long until one more is allowed.
    pub wait: Duration,
}

/// Why Redis gave no decision.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// Redis failed moments ago; not asked again yet.
    #[error("Redis failed less than {BACK_OFF:?} ago")]
    BackingOff,
}

/// After a failure, how long requests use the local limits without asking
/// Redis — so an unreachable Redis costs one timeout, not one per request.
const BACK_OFF: Duration = Duration::from_secs(1);

pub struct SharedLimiter {
    /// Until when Redis is not asked (after a failure).
    backing_off_until: std::sync::Mutex<Option<Instant>>,
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
    prefix: String,
}

impl SharedLimiter {
    /// Checks the URL now; connects on first use.
    pub fn new(url: &str, prefix: &str) -> Result<Self, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("rate-limit Redis {url}: {e}"))?;
        Ok(SharedLimiter {
            backing_off_until: std::sync::Mutex::new(None),
            client,
            connection: OnceCell::new(),
            script: redis::Script::new(GCRA),
            prefix: prefix.to_string(),
        })
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1);
        self.connection
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .cloned()
    }

    /// Spends one request of `client`'s budget under `policy` (named `name`).
    pub async fn check(
        &self,
        name: &str,
        policy: &RatePolicy,
        client: IpAddr,
    ) -> Result<SharedDecision, SharedError> {
        {
            let until = self
                .backing_off_until
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if until.is_some_and(|t| Instant::now() < t) {
                return Err(SharedError::BackingOff);
            }
        }
        let decided = self.ask(name, policy, client).await;
        if decided.is_err() {
            *self
                .backing_off_until
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + BACK_OFF);
        }
        decided.map_err(SharedError::from)
    }

    async fn ask(
        &self,
        name: &str,
        policy: &RatePolicy,
        client: IpAddr,
    ) -> redis::RedisResult<SharedDecision> {
        let mut conn = self.connection().await?;
        let interval_us = 1_000_000 / u64::from(policy.per_second.max(1));
        let key = format!("{}:{name}:{client}", self.prefix);
        let (allowed, remaining, wait_us): (i64, i64, i64) = self
            .script
            .key(key)
            .arg(interval_us.max(1))
            .arg(policy.burst.max(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(SharedDecision {
            allowed: allowed == 1,
            remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
            wait: Duration::from_micros(wait_us.max(0) as u64),
        })
    }
}
