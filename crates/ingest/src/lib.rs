//! weir's event ingest: what `POST /write` accepts and how it reaches the
//! database.
//!
//! Two durability modes share the parser:
//! - **direct**: the API node stores a request's events through group commit
//!   (`weir_store::EventWriter`) and answers 202 after the commit;
//! - **buffered**: the API node appends the batch to a Redis Stream
//!   ([`EventBuffer`]) and answers 202 once Redis has it; `weir worker` runs
//!   [`consumer::run`], which writes entries to the database in bulk and
//!   acknowledges them only after the commit, taking over entries left pending
//!   by a consumer that died.
//!
//! Event ids make both at-least-once paths store each event once.
//!
//! # Layout
//! - [`parse`]: a body (object, array, NDJSON) into events, or a precise error.
//! - [`buffer`]: [`EventBuffer`], the bounded stream producer.
//! - [`consumer`]: the consumer-group reader that drains the stream into the store.

pub mod buffer;
pub mod consumer;
pub mod parse;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use thiserror::Error;
use weir_core::StoreError;

pub use buffer::EventBuffer;
pub use consumer::ConsumerConfig;
pub use parse::{fingerprint, parse_events, BodyFormat, IdSource, ParseError};

/// The consumer group every `weir worker` reads the stream in.
pub const DEFAULT_GROUP: &str = "weir-ingest";
/// The stream buffered events go to unless configured otherwise.
pub const DEFAULT_STREAM: &str = "weir:events";

/// Buffered mode's settings; without them, ingest is direct.
#[derive(Clone, Debug)]
pub struct BufferConfig {
    pub redis_url: String,
    pub stream: String,
    /// Most entries (batches) waiting in the stream before appends get 503.
    pub max_len: u64,
    /// Entries pending on a consumer this long are taken over by another.
    pub claim_idle: Duration,
    /// Consumers each worker runs: each writes its own batches, so the
    /// database parses and indexes several at once.
    pub consumers_per_worker: usize,
    /// Answer an append only once Redis has synced it to its append-only
    /// file (`WAITAOF`, Redis 7.2 or later, `appendonly yes`).
    pub wait_aof: bool,
}

impl BufferConfig {
    pub fn new(redis_url: impl Into<String>) -> Self {
        BufferConfig {
            redis_url: redis_url.into(),
            stream: DEFAULT_STREAM.into(),
            max_len: 100_000,
            claim_idle: Duration::from_secs(30),
            consumers_per_worker: 2,
            wait_aof: false,
        }
    }

    /// The consumers a worker named `worker` runs.
    pub fn consumers(&self, worker: &str) -> Vec<ConsumerConfig> {
        (1..=self.consumers_per_worker.max(1))
            .map(|i| self.consumer(format!("{worker}/{i}")))
            .collect()
    }

    /// The settings of a consumer named `consumer` reading this buffer.
    pub fn consumer(&self, consumer: impl Into<String>) -> ConsumerConfig {
        let mut c = ConsumerConfig::new(self.redis_url.clone(), consumer);
        c.stream = self.stream.clone();
        c.claim_idle = self.claim_idle;
        c
    }
}

/// What can go wrong between an API node, Redis and the store.
#[derive(Debug, Error)]
pub enum IngestError {
    /// The stream holds `max_len` entries waiting for consumers.
    #[error("the ingest buffer is full ({max_len} batches wait for the database)")]
    Full { max_len: u64 },
    /// Redis refused, timed out or is unreachable.
    #[error("redis: {0}")]
    Redis(String),
    /// Redis cannot give what the configuration asks of it.
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IngestError {
    fn from_redis(e: redis::RedisError) -> Self {
        IngestError::Redis(e.to_string())
    }
}

/// Slowest answer Redis may take; above the consumer's blocking read time.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A reconnecting connection. Lazy: a node starts while Redis is away, and
/// its calls fail (503) until Redis is back.
async fn connect(url: &str) -> Result<ConnectionManager, IngestError> {
    let client = redis::Client::open(url).map_err(IngestError::from_redis)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config).map_err(IngestError::from_redis)
}
