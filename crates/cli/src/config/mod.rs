//! The command line. Every flag can also be set by its `WEIR_*` env var; flags
//! win over env. Durations take humane forms: `500ms`, `15s`, `1h`.
//!
//! # Layout
//! Settings by role, each a clap `Args` struct the commands flatten:
//! - `store`: the database URL and pool, for every role that opens the store.
//! - `api`: an API node's settings and `weir api`.
//! - `ingest`: event ingest, direct or buffered (API nodes and workers).
//! - `worker`: a worker's settings and `weir worker`.
//! - `types`: the task types a role knows and the key sealing their secrets.
//! - `lb`: the load balancer's settings, its TLS edge and `weir lb`.
//! - `bench`: `weir bench`'s subcommands.
//!
//! Here: the command tree (`Cli`, `Command`), `weir up` (every role at
//! once), `weir health`, `weir api-key`, `weir status`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::logging::LogFormat;

mod api;
mod bench;
mod ingest;
mod lb;
mod store;
mod tasks;
mod types;
mod worker;

pub use api::*;
pub use bench::*;
pub use ingest::*;
pub use lb::*;
pub use store::*;
pub use tasks::*;
pub use types::*;
pub use worker::*;

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
    #[command(flatten)]
    pub trace: TraceArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Distributed traces (any role).
#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// Export spans by OTLP/HTTP to this collector (`http://collector:4318`;
    /// `/v1/traces` is added). Without it no span is recorded and trace
    /// headers pass through unchanged.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,
    /// The share of new traces sampled (0 to 1); a request that arrives
    /// with a sampled `traceparent` is always traced.
    #[arg(
        long,
        env = "WEIR_TRACE_SAMPLE_RATIO",
        default_value_t = 1.0,
        global = true
    )]
    pub trace_sample_ratio: f64,
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
    /// Named queues at runtime, over the HTTP API: list, pause, resume, set
    /// limits (`weir queues pause emails`).
    Queues(QueuesArgs),
    /// Tasks over the HTTP API: list and show them, retry, cancel or
    /// delete many at once (`weir tasks retry --state dead --type email`).
    Tasks(TasksArgs),
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
pub struct QueuesArgs {
    #[command(subcommand)]
    pub action: QueuesAction,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum QueuesAction {
    /// Every queue with tasks, limits or a pause.
    List,
    /// No worker claims from it until it is resumed.
    Pause { name: String },
    /// Claimable again; waiting workers wake.
    Resume { name: String },
    /// Its limits for every worker at once (none given: cleared).
    Set {
        name: String,
        /// Most of its tasks running at once, across the cluster.
        #[arg(long)]
        concurrency: Option<i32>,
        /// Most of its tasks started per second, across the cluster.
        #[arg(long)]
        rate: Option<f64>,
        /// Starts the rate allows at once.
        #[arg(long)]
        burst: Option<i32>,
    },
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
