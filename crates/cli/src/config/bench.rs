//! `weir bench`'s flags: `weir bench <url>` (see `crate::cmd::load`) and the
//! built-in benchmarks.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::StoreArgs;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    #[command(flatten)]
    pub load: crate::cmd::load::LoadArgs,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Submit many md5 tasks through the lb; tasks/s and submit-to-start latency.
    Tasks(BenchTasksArgs),
    /// One task at a time into an idle system; how fast a worker starts it.
    Idle(BenchIdleArgs),
    /// Constant-rate GET load on a URL; latency measured from each request's due time.
    Http(BenchHttpArgs),
    /// A trivial upstream for lb benchmarks, optionally slow and failing.
    Upstream(BenchUpstreamArgs),
    /// Insert many no-op tasks straight into a store, then time workers draining them.
    Burndown(BenchBurndownArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BenchBurndownArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long, default_value_t = 100_000)]
    pub tasks: usize,
    /// Workers, in this process.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Tasks each worker runs at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// How long the workers' cleaner keeps finished tasks (every state), as
    /// `weir worker --retention`: a long one keeps a seeded history in place.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub retention: std::time::Duration,
    /// Also report the CPU these processes and their children spent per
    /// task in each phase (e.g. PostgreSQL's postmaster pid).
    #[arg(long = "cpu-of", value_delimiter = ',')]
    pub cpu_of: Vec<u32>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BenchHttpArgs {
    /// The URL to GET.
    #[arg(long)]
    pub url: String,
    /// Requests per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Connections the schedule is spread over.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BenchUpstreamArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Added to every answer.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Share of answers that are 500, in percent.
    #[arg(long, default_value_t = 0.0)]
    pub error_percent: f64,
    /// Requests worked on at once, each for --delay-ms; the rest wait their
    /// turn (a fixed pool of application workers). Default: unlimited.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub capacity: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchTarget {
    /// The system to load: the lb's URL.
    #[arg(
        long,
        env = "WEIR_BENCH_TARGET",
        default_value = "http://127.0.0.1:8080"
    )]
    pub target: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BenchTasksArgs {
    #[command(flatten)]
    pub target: BenchTarget,
    /// Tasks to submit.
    #[arg(long, default_value_t = 10_000)]
    pub tasks: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long to wait for the last task.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Submit at this fixed rate (tasks/s) rather than as fast as possible.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Submit tasks of this type (`POST /tasks`, input `{"n": i}`) instead
    /// of md5 hashes through `POST /hash/md5`.
    #[arg(long = "type")]
    pub task_type: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchIdleArgs {
    #[command(flatten)]
    pub target: BenchTarget,
    /// Tasks to submit, one at a time.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Pause before each submission, so the workers are idle.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    pub gap: Duration,
}
