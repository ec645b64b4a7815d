//! The consumer side of buffered ingest, run by `weir worker`.
//!
//! Each worker is one consumer in one consumer group. It reads entries with
//! `XREADGROUP`, writes their events to the store in one call, and only then
//! acknowledges and deletes the entries (one `MULTI`). A consumer killed
//! between the read and the acknowledgement leaves its entries pending; any
//! live consumer takes them over with `XAUTOCLAIM` once they have been idle
//! for `claim_idle`, and writes them again — which stores nothing twice,
//! because events are unique by id.
//!
//! An entry that cannot be decoded, or whose events the store rejects one by
//! one, is moved to `<stream>:dead` instead of blocking the stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use tokio_util::sync::CancellationToken;
use weir_core::{EventLog, NewEvent};

use crate::buffer::{decode, EVENTS_FIELD};
use crate::IngestError;

/// One consumer's settings.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    pub redis_url: String,
    pub stream: String,
    pub group: String,
    /// This consumer's name in the group (the worker id).
    pub consumer: String,
    /// Most entries taken per read.
    pub read_count: usize,
    /// How long a read waits for new entries.
    pub block: Duration,
    /// Entries pending on another consumer this long are taken over.
    pub claim_idle: Duration,
}

impl ConsumerConfig {
    pub fn new(redis_url: impl Into<String>, consumer: impl Into<String>) -> Self {
        ConsumerConfig {
            redis_url: redis_url.into(),
            stream: crate::DEFAULT_STREAM.into(),
            group: crate::DEFAULT_GROUP.into(),
            consumer: consumer.into(),
            read_count: 16,
            block: Duration::from_millis(500),
            claim_idle: Duration::from_secs(30),
        }
    }
}

/// What a consumer did before it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsumerReport {
    pub entries: u64,
    pub events: u64,
    pub dead_entries: u64,
}

/// Drains the stream into `store` until `shutdown`; the batch in hand is
/// finished first.
pub async fn run(
    store: Arc<dyn EventLog>,
    config: ConsumerConfig,
    shutdown: CancellationToken,
) -> Result<ConsumerReport, IngestError> {
    let conn = crate::connect(&config.redis_url).await?;
    let mut c = Consumer {
        conn,
        store,
        config,
        report: ConsumerReport::default(),
        group_ready: false,
    };
    // Claim at once: a restarted worker first finishes what a dead one left.
    let mut last_claim: Option<Instant> = None;
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let due = last_claim.is_none_or(|t| t.elapsed() >= c.config.claim_idle / 2);
        let step = async {
            c.ensure_group().await?;
            let mut entries = Vec::new();
            if due {
                entries = c.autoclaim().await?;
            }
            if entries.is_empty() {
                entries = c.read_new().await?;
            }
            c.write(entries, &shutdown).await
        };
        match step.await {
            Ok(()) => {
                failures = 0;
                if due {
                    last_claim = Some(Instant::now());
                }
            }
            Err(e) => {
                failures += 1;
                c.group_ready = false;
                tracing::warn!(error = %e, failures, "ingest consumer: retrying");
                let pause = Duration::from_millis(100 * u64::from(failures.min(20)));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
    Ok(c.report)
}

struct Consumer {
    conn: ConnectionManager,
    store: Arc<dyn EventLog>,
    config: ConsumerConfig,
    report: ConsumerReport,
    group_ready: bool,
}

impl Consumer {
    /// Creates the group (reading from the stream's start, so batches
    /// appended before any worker ran are not skipped) unless it exists.
    async fn ensure_group(&mut self) -> Result<(), IngestError> {
        if self.group_ready {
            return Ok(());
        }
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn)
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(IngestError::from_redis(e)),
        }
        self.group_ready = true;
        Ok(())
    }

    async fn autoclaim(&mut self) -> Result<Vec<StreamId>, IngestError> {
        let idle_ms = u64::try_from(self.config.claim_idle.as_millis()).unwrap_or(u64::MAX);
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(&self.config.consumer)
            .arg(idle_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(self.config.read_count)
            .query_async(&mut self.conn)
            .await
            .map_err(IngestError::from_redis)?;
        if !reply.claimed.is_empty() {
            tracing::info!(
                entries = reply.claimed.len(),
                "ingest consumer: took over entries a stopped consumer left"
            );
        }
        Ok(reply.claimed)
    }

    async fn read_new(&mut self) -> Result<Vec<StreamId>, IngestError> {
        let block_ms = u64::try_from(self.config.block.as_millis()).unwrap_or(1000);
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.config.consumer)
            .arg("COUNT")
            .arg(self.config.read_count)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(&self.config.stream)
            .arg(">")
            .query_async(&mut self.conn)
            .await
            .map_err(IngestError::from_redis)?;
        Ok(reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }

    /// Stores the entries' events, then acknowledges and deletes the entries.
    /// A store that is away is waited for (the entries stay pending on us).
    async fn write(
        &mut self,
        entries: Vec<StreamId>,
        shutdown: &CancellationToken,
    ) -> Result<(), IngestError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut events: Vec<NewEvent> = Vec::new();
        let mut done: Vec<String> = Vec::with_capacity(entries.len());
        for entry in &entries {
            let raw: Option<Vec<u8>> = entry.get(EVENTS_FIELD);
            match raw.as_deref().map(decode) {
                Some(Ok(batch)) => events.extend(batch),
                Some(Err(why)) => self.dead_letter(entry, &why).await?,
                None => self.dead_letter(entry, "no events field").await?,
            }
            done.push(entry.id.clone());
        }
        let mut pause = Duration::from_millis(50);
        loop {
            match self.store.event_insert_many(&events).await {
                Ok(_) => break,
                Err(e) if e.is_retryable() => {
                    if shutdown.is_cancelled() {
                        // Left pending: another consumer takes them over.
                        return Ok(());
                    }
                    tracing::warn!(error = %e, "ingest consumer: database away; waiting");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::error!(error = %e, "ingest consumer: batch refused; writing one by one");
                    self.write_one_by_one(&events).await?;
                    break;
                }
            }
        }
        redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(&done)
            .ignore()
            .cmd("XDEL")
            .arg(&self.config.stream)
            .arg(&done)
            .ignore()
            .query_async::<()>(&mut self.conn)
            .await
            .map_err(IngestError::from_redis)?;
        self.report.entries += done.len() as u64;
        self.report.events += events.len() as u64;
        tracing::debug!(
            entries = done.len(),
            events = events.len(),
            "ingest consumer: batch committed"
        );
        Ok(())
    }

    async fn write_one_by_one(&mut self, events: &[NewEvent]) -> Result<(), IngestError> {
        for event in events {
            if let Err(e) = self
                .store
                .event_insert_many(std::slice::from_ref(event))
                .await
            {
                if e.is_retryable() {
                    return Err(e.into());
                }
                let entry = crate::buffer::encode(std::slice::from_ref(event));
                self.push_dead(&entry, &e.to_string()).await?;
            }
        }
        Ok(())
    }

    async fn dead_letter(&mut self, entry: &StreamId, why: &str) -> Result<(), IngestError> {
        tracing::error!(entry = %entry.id, why, "ingest consumer: undecodable entry moved to the dead stream");
        let raw: Vec<u8> = entry.get(EVENTS_FIELD).unwrap_or_default();
        self.push_dead(&String::from_utf8_lossy(&raw), why).await
    }

    async fn push_dead(&mut self, events: &str, why: &str) -> Result<(), IngestError> {
        self.report.dead_entries += 1;
        redis::cmd("XADD")
            .arg(format!("{}:dead", self.config.stream))
            .arg("*")
            .arg("reason")
            .arg(why)
            .arg(EVENTS_FIELD)
            .arg(events)
            .query_async::<()>(&mut self.conn)
            .await
            .map_err(IngestError::from_redis)
    }
}
