//! Event ingest's settings (`IngestArgs`): direct or through a Redis
//! Stream, which API nodes append to and workers drain.

use std::time::Duration;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// How `POST /write` stores events: `direct` (group commit, 202 after the
    /// database commit) or `buffered` (Redis Stream, 202 once Redis has it;
    /// workers move events to the database).
    #[arg(long, env = "WEIR_INGEST_MODE", default_value = "direct", value_parser = ["direct", "buffered"])]
    pub ingest_mode: String,
    /// Redis, for buffered ingest.
    #[arg(long, env = "WEIR_REDIS_URL")]
    pub redis_url: Option<String>,
    /// The Redis Stream buffered events go through.
    #[arg(long, env = "WEIR_INGEST_STREAM", default_value = weir_ingest::DEFAULT_STREAM)]
    pub ingest_stream: String,
    /// Most batches waiting in the stream; past it `POST /write` answers 503.
    #[arg(long, env = "WEIR_INGEST_BUFFER_MAX", default_value_t = 100_000)]
    pub ingest_buffer_max: u64,
    /// A batch pending on a silent consumer this long is taken over by another.
    #[arg(long, env = "WEIR_INGEST_CLAIM_IDLE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ingest_claim_idle: Duration,
    /// Stream consumers each worker runs (each commits its own batches).
    #[arg(long, env = "WEIR_INGEST_CONSUMERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub ingest_consumers: u16,
    /// Buffered ingest: answer 202 only once Redis has synced the batch to
    /// its append-only file (WAITAOF; Redis 7.2 or later, appendonly yes),
    /// so an acknowledged event survives a power loss of the Redis machine.
    #[arg(long, env = "WEIR_INGEST_WAIT_AOF")]
    pub ingest_wait_aof: bool,
}

impl IngestArgs {
    /// The buffer's settings in buffered mode; `None` in direct mode.
    pub fn buffer(&self) -> anyhow::Result<Option<weir_ingest::BufferConfig>> {
        if self.ingest_mode != "buffered" {
            return Ok(None);
        }
        let url = self.redis_url.clone().ok_or_else(|| {
            anyhow::anyhow!("--ingest-mode buffered needs --redis-url (or WEIR_REDIS_URL)")
        })?;
        let mut b = weir_ingest::BufferConfig::new(url);
        b.stream = self.ingest_stream.clone();
        b.max_len = self.ingest_buffer_max;
        b.claim_idle = self.ingest_claim_idle;
        b.consumers_per_worker = self.ingest_consumers.into();
        b.wait_aof = self.ingest_wait_aof;
        Ok(Some(b))
    }
}
