//! The command line. Every flag can also be set by its `WEIR_*` env var; flags
//! win over env. Durations take humane forms: `500ms`, `15s`, `1h`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use weir_lb::Strategy;

use crate::logging::LogFormat;

mod bench;
pub use bench::*;

/// `WEIR_X_FILE=PATH` sets `WEIR_X` to the file's contents (one trailing
/// newline dropped) unless `WEIR_X` is set: Docker and Kubernetes hand
/// secrets over as files, and a token or a database URL with its password
/// then never sits in the process's environment listing or the deploy files.
/// Call before any other thread starts (it sets environment variables).
pub fn env_from_files() -> Result<(), String> {
    let wanted: Vec<(String, std::ffi::OsString)> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let name = k.to_str()?.strip_suffix("_FILE")?;
            (name.starts_with("WEIR_") && std::env::var_os(name).is_none())
                .then(|| (name.to_string(), v))
        })
        .collect();
    for (name, path) in wanted {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{name}_FILE: reading {}: {e}", path.to_string_lossy()))?;
        let value = text.strip_suffix('\n').unwrap_or(&text);
        let value = value.strip_suffix('\r').unwrap_or(value);
        std::env::set_var(name, value);
    }
    Ok(())
}

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "A request-and-task processing platform in one binary"
)]
pub struct Cli {
    /// A TOML file of settings (keys are flag names); flags and env win over it.
    #[arg(long, env = "WEIR_CONFIG", global = true)]
    pub config: Option<std::path::PathBuf>,
    /// Log format on stderr.
    #[arg(long, env = "WEIR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Check flags, env and config file as the command would, print one
    /// line, and exit without starting (what deploy files are tested with).
    #[arg(long, global = true)]
    pub check_config: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole system in one process: lb, API nodes and workers on an embedded SQLite store.
    Up(Box<UpArgs>),
    /// The load balancer alone.
    Lb(Box<LbArgs>),
    /// One API node.
    Api(ApiArgs),
    /// One worker.
    Worker(WorkerArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate(StoreArgs),
    /// Load-test a URL (`weir bench http://127.0.0.1:8080 -c 64 -d 10s`), or
    /// run one of the built-in benchmarks below.
    Bench(BenchArgs),
    /// The cluster at a glance: nodes, workers, tasks, cache, and verdicts.
    Status(StatusArgs),
    /// Make a client key for `--api-keys`: prints the key (once) and the
    /// file entry that holds only its hash.
    ApiKey(ApiKeyArgs),
    /// Probe a URL (e.g. `/health/ready`): exit 0 on a 2xx answer in time,
    /// 1 otherwise — a container health check without curl.
    Health(HealthArgs),
}

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// The URL to probe, e.g. http://127.0.0.1:8081/health/ready.
    pub url: String,
    /// Longest wait for the answer.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ApiKeyArgs {
    /// A name for the key (shown in refusals and logs).
    #[arg(long)]
    pub name: String,
    /// What it may do: submit, read, manage (comma-separated).
    #[arg(long, value_delimiter = ',', required = true, value_parser = parse_scope)]
    pub scopes: Vec<weir_api::api_keys::Scope>,
    /// The tenant whose tasks alone the key sees, cancels and retries.
    #[arg(long, value_parser = parse_tenant)]
    pub tenant: Option<String>,
}

fn parse_tenant(s: &str) -> Result<String, String> {
    use weir_api::api_keys::{valid_tenant, MAX_TENANT_BYTES};
    if valid_tenant(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "a tenant is 1 to {MAX_TENANT_BYTES} of A-Z a-z 0-9 _ . -"
        ))
    }
}

fn parse_scope(s: &str) -> Result<weir_api::api_keys::Scope, String> {
    serde_json::from_value(serde_json::Value::String(s.trim().to_string()))
        .map_err(|_| format!("unknown scope {s:?}: submit, read or manage"))
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The lb's URL.
    #[arg(
        long,
        env = "WEIR_STATUS_TARGET",
        default_value = "http://127.0.0.1:8080"
    )]
    pub target: String,
    /// A client key with the `read` scope, for API nodes started with
    /// `--api-keys`.
    #[arg(long, env = "WEIR_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Read the store itself instead of asking an lb (workers, tasks,
    /// queues, requests per node; no lb health or latency).
    #[arg(long, env = "WEIR_STATUS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// How long to watch the queue for its trend (growing or draining);
    /// 0 skips it.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub sample: Duration,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Refresh in place at this interval until Ctrl-C (e.g. `--watch 2s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub watch: Option<Duration>,
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Database URL, e.g. sqlite://weir-data/weir.db.
    #[arg(long, env = "WEIR_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Pooled database connections per process.
    #[arg(long, env = "WEIR_DB_MAX_CONNECTIONS", default_value_t = 8)]
    pub db_max_connections: u32,
    /// How long a caller waits for a pooled connection; API requests also retry
    /// a busy or unreachable database this long before answering 503.
    #[arg(long, env = "WEIR_DB_BUSY_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub db_busy_timeout: Duration,
    /// Do not run migrations on start.
    #[arg(long, env = "WEIR_NO_MIGRATE")]
    pub no_migrate: bool,
    /// The PostgreSQL URL goes through a transaction pooler (pgbouncer,
    /// pool_mode = transaction): each statement in its own transaction, no
    /// named prepared statements; `weir migrate` must then go direct.
    #[arg(long, env = "WEIR_TRANSACTION_POOLER")]
    pub transaction_pooler: bool,
    /// Beside a transaction pooler: a direct PostgreSQL URL for LISTEN, so
    /// workers wake at once (without it they poll).
    #[arg(long, env = "WEIR_LISTEN_DATABASE_URL")]
    pub listen_database_url: Option<String>,
    /// SQLite only: `full` syncs every commit to disk before it is
    /// acknowledged (survives a power loss); `normal` syncs at checkpoints
    /// only (survives a process crash, not a power loss; cheaper writes).
    #[arg(long, env = "WEIR_SQLITE_SYNCHRONOUS", default_value = "full")]
    pub sqlite_synchronous: weir_store_sql::SqliteSynchronous,
}

#[derive(Debug, Clone, Args)]
pub struct ApiNodeArgs {
    /// Simulated processing time of `GET /`, in milliseconds.
    #[arg(long, env = "WEIR_DELAY_MS", default_value_t = 0)]
    pub delay_ms: u64,
    /// Bearer token external workers present to `POST /workers/{id}/claim`
    /// and report results (without it those endpoints refuse every call;
    /// `weir up` generates one).
    #[arg(long, env = "WEIR_WORKER_TOKEN")]
    pub worker_token: Option<String>,
    /// Client keys (TOML, made with `weir api-key`): every task, event and
    /// request-log endpoint then needs a key with the right scope. Without
    /// it those endpoints are open to whoever reaches them.
    #[arg(long, env = "WEIR_API_KEYS")]
    pub api_keys: Option<std::path::PathBuf>,
    /// An origin (`https://app.example.com`) whose pages may call the API
    /// from a browser; repeat or comma-separate for more, `*` for any.
    /// Without it browsers refuse cross-origin calls (no CORS headers).
    #[arg(long = "cors-origin", env = "WEIR_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "WEIR_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Attempts a task gets unless its submission says otherwise.
    #[arg(long, env = "WEIR_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: i32,
    /// A worker silent this long is shown as offline.
    #[arg(long, env = "WEIR_WORKER_OFFLINE_AFTER", default_value = "10s", value_parser = humantime::parse_duration)]
    pub worker_offline_after: Duration,
    /// Largest `POST /write` body, in bytes.
    #[arg(long, env = "WEIR_MAX_WRITE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_write_bytes: usize,
    /// Most events in one `POST /write`.
    #[arg(long, env = "WEIR_MAX_WRITE_EVENTS", default_value_t = 100_000)]
    pub max_write_events: usize,
    #[command(flatten)]
    pub ingest: IngestArgs,
}

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

#[derive(Debug, Clone, Args)]
pub struct WorkerTuning {
    /// Lease on a running task; renewed while it runs, rescued after it lapses.
    #[arg(long, env = "WEIR_LEASE", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// How long a draining worker lets running tasks finish.
    #[arg(long, env = "WEIR_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// How long md5/sha256 results stay in the shared cache.
    #[arg(long, env = "WEIR_CACHE_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub cache_ttl: Duration,
    /// How often each worker looks for tasks whose lease lapsed (a crashed worker's).
    #[arg(long, env = "WEIR_RESCUE_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub rescue_interval: Duration,
    /// Backoff between failed attempts: first ceiling and cap, `BASE:CAP`
    /// (full jitter below the ceiling, which doubles per attempt).
    #[arg(long, env = "WEIR_RETRY_BACKOFF", default_value = "1s:5m", value_parser = parse_backoff)]
    pub retry_backoff: weir_core::RetryPolicy,
    /// Backoff for one task type, `TYPE=BASE:CAP`; repeatable (`;`-separated in env).
    #[arg(long = "retry-backoff-for", env = "WEIR_RETRY_BACKOFF_FOR", value_delimiter = ';', value_parser = parse_kind_backoff)]
    pub retry_backoff_for: Vec<(String, weir_core::RetryPolicy)>,
    /// A periodic job, `NAME|CRON|TYPE|INPUT` (cron with 5 fields, or 6 with
    /// seconds first); repeatable (`;`-separated in env). Queued by one node.
    #[arg(long = "periodic", env = "WEIR_PERIODIC", value_delimiter = ';')]
    pub periodic: Vec<weir_worker::maintenance::scheduler::PeriodicJob>,
    /// Finished tasks are deleted this long after they finished.
    #[arg(long, env = "WEIR_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// How often the maintenance leader cleans (old tasks, expired cache, silent workers).
    #[arg(long, env = "WEIR_MAINTENANCE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub maintenance_interval: Duration,
    /// How often an idle worker polls when no wake-up arrives.
    #[arg(long, env = "WEIR_POLL_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// Only claim from these queues (default: every queue).
    #[arg(long, env = "WEIR_QUEUES", value_delimiter = ',')]
    pub queues: Vec<String>,
    /// A queue's cluster-wide limits, `NAME=concurrency:N,rate:R,burst:B`
    /// (any of the three); repeatable (`;`-separated in env). Kept in the store.
    #[arg(long = "queue-limit", env = "WEIR_QUEUE_LIMIT", value_delimiter = ';', value_parser = parse_queue_limit)]
    pub queue_limit: Vec<weir_core::QueueLimits>,
    /// Most running tasks per `concurrency_key`, across the cluster.
    #[arg(long, env = "WEIR_CONCURRENCY_KEY_LIMIT", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100_000))]
    pub concurrency_key_limit: i32,
}

/// The task types a role knows: the built-ins, the config file's
/// `[task_types.NAME]` tables and `--task-type` one-liners.
#[derive(Debug, Clone, Args)]
pub struct TaskTypeArgs {
    /// A task type in one line: `NAME=http:URL`, `NAME=command:PROGRAM ARG…`,
    /// `NAME=external` or `NAME=rust`; repeatable (`;`-separated in env).
    /// Full settings go in the config file as `[task_types.NAME]`.
    #[arg(long = "task-type", env = "WEIR_TASK_TYPE", value_delimiter = ';', value_parser = parse_task_type)]
    pub task_type: Vec<weir_core::TaskTypeSpec>,
    /// Key sealing sensitive task inputs (argon2's password, a type's
    /// `sensitive` fields) in the store: 64 hex digits, the same on every api
    /// and worker node. `weir up` keeps one in its data directory; without
    /// one, secrets stay out of answers and logs but not out of the database.
    #[arg(long, env = "WEIR_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<String>,
}

/// Says at start what a node leaves open, once its settings are known good.
pub fn warn_what_is_open(types: &weir_core::TaskTypes, api: Option<&weir_api::ApiConfig>) {
    if types.sealer().origin() == weir_core::KeyOrigin::Public {
        tracing::warn!(
            "no --secrets-key: sensitive task inputs are hidden from answers and logs but \
             can be read from the database; set WEIR_SECRETS_KEY (64 hex digits, the same \
             on every api and worker node)"
        );
    }
    if api.is_some_and(|a| a.api_keys.is_none()) {
        tracing::warn!(
            "no --api-keys: task, event and request-log endpoints are open to anyone who \
             reaches this node"
        );
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn parse_task_type(s: &str) -> Result<weir_core::TaskTypeSpec, String> {
    weir_core::TaskTypeConfig::parse_flag(s).map_err(|e| e.message)
}

impl TaskTypeArgs {
    /// `--secrets-key`, else the one kept in `path` (made on first use,
    /// readable by its owner only): how `weir up` seals without setup.
    pub fn key_from_file(&mut self, path: &std::path::Path) -> anyhow::Result<()> {
        if self.secrets_key.as_deref().is_some_and(|k| !k.is_empty()) {
            return Ok(());
        }
        let key = match std::fs::read_to_string(path) {
            Ok(key) => key.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = weir_core::Sealer::generate_hex();
                write_private(path, &key)?;
                key
            }
            Err(e) => anyhow::bail!("reading the secrets key {}: {e}", path.display()),
        };
        weir_core::Sealer::from_hex(&key)
            .map_err(|e| anyhow::anyhow!("secrets key in {}: {e}", path.display()))?;
        self.secrets_key = Some(key);
        Ok(())
    }

    /// The registry: built-ins, then the file's tables, then the flags
    /// (a later one replaces an earlier one of the same name).
    pub fn registry(
        &self,
        file: &[(String, weir_core::TaskTypeConfig)],
    ) -> anyhow::Result<weir_core::TaskTypes> {
        let sealer = match self.secrets_key.as_deref().filter(|k| !k.is_empty()) {
            Some(key) => {
                weir_core::Sealer::from_hex(key).map_err(|e| anyhow::anyhow!("secrets-key: {e}"))?
            }
            None => weir_core::Sealer::default(),
        };
        let mut types = weir_core::TaskTypes::default().with_sealer(sealer);
        for (name, table) in file {
            types.insert(table.clone().into_spec(name)?)?;
        }
        for spec in &self.task_type {
            types.insert(spec.clone())?;
        }
        Ok(types)
    }
}

fn parse_queue_limit(s: &str) -> Result<weir_core::QueueLimits, String> {
    let (name, spec) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=concurrency:N,rate:R,burst:B, got {s:?}"))?;
    let mut limits = weir_core::QueueLimits {
        name: name.trim().to_string(),
        concurrency: None,
        rate_per_second: None,
        burst: None,
    };
    if limits.name.is_empty() {
        return Err(format!("queue limit {s:?} names no queue"));
    }
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once(':')
            .ok_or_else(|| format!("expected KEY:VALUE in {part:?}"))?;
        let bad = |_| format!("bad number in {part:?}");
        match key.trim() {
            "concurrency" => limits.concurrency = Some(value.trim().parse().map_err(bad)?),
            "rate" => {
                let rate: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad rate in {part:?}"))?;
                if !(rate > 0.0 && rate.is_finite()) {
                    return Err(format!("rate must be above 0 in {part:?}"));
                }
                limits.rate_per_second = Some(rate);
            }
            "burst" => limits.burst = Some(value.trim().parse().map_err(bad)?),
            other => {
                return Err(format!(
                    "unknown queue limit {other:?} (concurrency, rate, burst)"
                ))
            }
        }
    }
    if limits.concurrency.is_some_and(|c| c < 1) || limits.burst.is_some_and(|b| b < 1) {
        return Err(format!("limits in {s:?} must be at least 1"));
    }
    Ok(limits)
}

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
pub struct UpArgs {
    /// Where the load balancer listens.
    #[arg(long, env = "WEIR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// API nodes to run.
    #[arg(long, env = "WEIR_API_NODES", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub api_nodes: u16,
    /// Workers to run.
    #[arg(long, env = "WEIR_WORKERS", default_value_t = 3, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub workers: u16,
    /// Tasks each worker runs at once.
    #[arg(long, env = "WEIR_WORKER_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_concurrency: u16,
    /// Where the embedded store lives (created if missing).
    #[arg(long, env = "WEIR_DATA_DIR", default_value = "weir-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub api: ApiNodeArgs,
    #[command(flatten)]
    pub types: TaskTypeArgs,
    #[command(flatten)]
    pub worker: WorkerTuning,
    #[command(flatten)]
    pub balancer: BalancerArgs,
    #[command(flatten)]
    pub tls: TlsListenArgs,
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

#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Where this API node listens.
    #[arg(long, env = "WEIR_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// This node's id (default: api-<pid>).
    #[arg(long, env = "WEIR_NODE_ID")]
    pub node_id: Option<String>,
    /// A running lb to join at start and leave (drain, then deregister) on shutdown.
    #[arg(long, env = "WEIR_REGISTER_WITH")]
    pub register_with: Option<String>,
    /// The URL the lb reaches this node at (default: http://<listen address>).
    #[arg(long, env = "WEIR_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// The lb's admin token, for --register-with.
    #[arg(long, env = "WEIR_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// On SIGTERM, answer `/health/ready` with 503 and keep serving this
    /// long before closing the listener, so whatever routes to this node
    /// stops first (e.g. 5s behind a Kubernetes Service).
    #[arg(long, env = "WEIR_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub api: ApiNodeArgs,
    #[command(flatten)]
    pub types: TaskTypeArgs,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// This worker's id (default: worker-<pid>).
    #[arg(long, env = "WEIR_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Tasks run at once.
    #[arg(long, env = "WEIR_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Serve Prometheus `GET /metrics` on this address (e.g. 0.0.0.0:9464;
    /// port 0 picks one and prints it). A worker has no other HTTP port, so
    /// without it its metrics are not served.
    #[arg(long, env = "WEIR_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub worker: WorkerTuning,
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub types: TaskTypeArgs,
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    s.parse()
}

fn parse_backoff(s: &str) -> Result<weir_core::RetryPolicy, String> {
    weir_core::task_type::parse_backoff(s)
}

fn parse_kind_backoff(s: &str) -> Result<(String, weir_core::RetryPolicy), String> {
    let (kind, backoff) = s
        .split_once('=')
        .ok_or_else(|| format!("expected TYPE=BASE:CAP like flaky=100ms:2s, got {s:?}"))?;
    let kind = weir_core::TaskType::new(kind.trim()).map_err(|e| e.to_string())?;
    Ok((kind.to_string(), parse_backoff(backoff)?))
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

impl StoreArgs {
    /// The store options, with `default_url` when no URL was given.
    pub fn options(
        &self,
        default_url: Option<String>,
    ) -> anyhow::Result<weir_store_sql::StoreOptions> {
        let url =
            self.database_url.clone().or(default_url).ok_or_else(|| {
                anyhow::anyhow!("--database-url (or WEIR_DATABASE_URL) is required")
            })?;
        let mut options = weir_store_sql::StoreOptions::new(url);
        options.max_connections = self.db_max_connections.max(1);
        options.migrate = !self.no_migrate;
        options.acquire_timeout = self.db_busy_timeout;
        options.transaction_pooler = self.transaction_pooler;
        options.listen_database_url = self.listen_database_url.clone();
        options.sqlite_synchronous = self.sqlite_synchronous;
        Ok(options)
    }
}

impl ApiNodeArgs {
    pub fn config(
        &self,
        node_id: String,
        db_busy_timeout: Duration,
        task_types: weir_core::TaskTypes,
    ) -> anyhow::Result<weir_api::ApiConfig> {
        let mut config = weir_api::ApiConfig::new(node_id);
        config.task_types = std::sync::Arc::new(task_types);
        config.worker_token = self.worker_token.clone().filter(|t| !t.is_empty());
        config.api_keys = match &self.api_keys {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("api-keys: reading {}: {e}", path.display()))?;
                let keys = weir_api::api_keys::ApiKeys::parse(&text)
                    .map_err(|e| anyhow::anyhow!("api-keys: {}: {e}", path.display()))?;
                Some(keys)
            }
            None => None,
        };
        config.cors_origins = valid_cors_origins(&self.cors_origins)?;
        config.max_write_bytes = self.max_write_bytes;
        config.max_write_events = self.max_write_events.max(1);
        config.ingest_buffer = self.ingest.buffer()?;
        config.db_busy_timeout = db_busy_timeout;
        config.delay = Duration::from_millis(self.delay_ms);
        config.max_body_bytes = self.max_body_bytes;
        config.default_max_attempts = self.max_attempts.clamp(1, 100);
        config.worker_offline_after = self.worker_offline_after;
        Ok(config)
    }
}

/// `--cors-origin` values: `*`, or `scheme://host[:port]` exactly as a
/// browser sends it in `Origin` (no path, no trailing slash).
fn valid_cors_origins(origins: &[String]) -> anyhow::Result<Vec<String>> {
    let mut valid = Vec::new();
    for origin in origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
        let well_formed = origin == "*"
            || (http::HeaderValue::from_str(origin).is_ok()
                && origin.split_once("://").is_some_and(|(scheme, host)| {
                    matches!(scheme, "http" | "https")
                        && !host.is_empty()
                        && !host.contains(['/', ' ', '?', '#'])
                }));
        if !well_formed {
            anyhow::bail!(
                "cors-origin: {origin:?} is not `*` or an origin such as https://app.example.com"
            );
        }
        valid.push(origin.to_owned());
    }
    Ok(valid)
}

impl WorkerTuning {
    /// The task types with this tuning's `--retry-backoff-for` applied.
    pub fn task_types(
        &self,
        mut types: weir_core::TaskTypes,
    ) -> anyhow::Result<weir_core::TaskTypes> {
        for (name, policy) in &self.retry_backoff_for {
            types.set_retry_backoff(name, *policy)?;
        }
        Ok(types)
    }

    pub fn config(
        &self,
        worker_id: String,
        concurrency: usize,
        task_types: weir_core::TaskTypes,
    ) -> anyhow::Result<weir_worker::WorkerConfig> {
        for job in &self.periodic {
            job.check(&task_types).map_err(anyhow::Error::msg)?;
        }
        let mut config = weir_worker::WorkerConfig::new(worker_id).with_task_types(task_types)?;
        config.concurrency = concurrency.max(1);
        config.lease = self.lease;
        config.shutdown_grace = self.shutdown_grace;
        config.cache_ttl = self.cache_ttl;
        config.poll_interval = self.poll_interval;
        config.rescue_interval = self.rescue_interval;
        config.retry = self.retry_backoff;
        config.periodic = self.periodic.clone();
        config.retention = self.retention;
        config.maintenance_interval = self.maintenance_interval.max(Duration::from_millis(100));
        config.queues = (!self.queues.is_empty()).then(|| self.queues.clone());
        config.queue_limits = self.queue_limit.clone();
        config.concurrency_key_limit = self.concurrency_key_limit;
        // Renew well inside the lease so one slow heartbeat never loses it.
        config.heartbeat_interval =
            (self.lease / 5).clamp(Duration::from_millis(200), Duration::from_secs(5));
        Ok(config)
    }
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
    use std::time::Duration;

    use super::*;

    #[test]
    fn backoffs_parse_with_their_task_type() {
        let (kind, p) = parse_kind_backoff("flaky=100ms:2s").unwrap();
        assert_eq!(kind, "flaky");
        assert_eq!(
            (p.base, p.cap),
            (Duration::from_millis(100), Duration::from_secs(2))
        );
        assert!(parse_kind_backoff("no pe=1s:2s").is_err());
        assert!(parse_backoff("2s:1s").is_err(), "cap below base");
        assert!(parse_backoff("0s:1s").is_err());
        assert!(parse_backoff("1s").is_err());
    }

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

    #[test]
    fn cors_origins_must_be_origins() {
        let ok = valid_cors_origins(&["https://app.example.com".into(), "*".into()]).unwrap();
        assert_eq!(ok, ["https://app.example.com", "*"]);
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "ftp://x",
            "https://a\u{7f}b",
        ] {
            let err = valid_cors_origins(&[bad.into()]).unwrap_err().to_string();
            assert!(err.starts_with("cors-origin: "), "{err}");
        }
    }
}
