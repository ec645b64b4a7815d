//! A worker's settings (`WorkerTuning`), the task types it runs
//! (`TaskTypeArgs`) and `weir worker`'s command (`WorkerArgs`).

use std::time::Duration;

use clap::Args;

use super::ingest::IngestArgs;
use super::store::StoreArgs;
use super::types::TaskTypeArgs;

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
    /// Finished tasks are deleted this long after they finished (succeeded
    /// and cancelled ones unless told otherwise below; finished workflows
    /// and idempotency keys too).
    #[arg(long, env = "WEIR_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// Succeeded tasks are kept this long (default: --retention).
    #[arg(long, env = "WEIR_RETAIN_SUCCEEDED", value_parser = humantime::parse_duration)]
    pub retain_succeeded: Option<Duration>,
    /// Dead tasks are kept this long, for an operator to look at and retry
    /// (default: 7 days, or --retention if longer).
    #[arg(long, env = "WEIR_RETAIN_DEAD", value_parser = humantime::parse_duration)]
    pub retain_dead: Option<Duration>,
    /// Cancelled tasks are kept this long (default: --retention).
    #[arg(long, env = "WEIR_RETAIN_CANCELLED", value_parser = humantime::parse_duration)]
    pub retain_cancelled: Option<Duration>,
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

fn parse_queue_limit(s: &str) -> Result<weir_core::QueueLimits, String> {
    let (name, spec) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=concurrency:N,rate:R,burst:B, got {s:?}"))?;
    let mut limits = weir_core::QueueLimits {
        name: name.trim().to_string(),
        concurrency: None,
        rate_per_second: None,
        burst: None,
        paused: false,
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
    limits.check()?;
    Ok(limits)
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
        config.retention = self.retain_succeeded.unwrap_or(self.retention);
        config.retain_dead = self
            .retain_dead
            .unwrap_or(self.retention.max(Duration::from_secs(7 * 24 * 3600)));
        config.retain_cancelled = self.retain_cancelled.unwrap_or(self.retention);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn worker_config(flags: &[&str]) -> weir_worker::WorkerConfig {
        use clap::Parser;
        let argv = ["weir", "worker"];
        let cli = crate::config::Cli::try_parse_from(argv.iter().chain(flags)).unwrap();
        let crate::config::Command::Worker(args) = cli.command else {
            panic!("not a worker");
        };
        let types = args
            .worker
            .task_types(weir_core::TaskTypes::default())
            .unwrap();
        args.worker.config("w".into(), 1, types).unwrap()
    }

    #[test]
    fn each_end_has_its_retention_and_dead_tasks_stay_a_week_by_default() {
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let c = worker_config(&[]);
        assert_eq!(
            (c.retention, c.retain_dead, c.retain_cancelled),
            (hours(24), hours(168), hours(24))
        );
        let c = worker_config(&["--retention", "1h"]);
        assert_eq!(
            (c.retention, c.retain_dead, c.retain_cancelled),
            (hours(1), hours(168), hours(1))
        );
        let c = worker_config(&["--retention", "30d"]);
        assert_eq!(c.retain_dead, hours(720), "never shorter than --retention");
        let c = worker_config(&[
            "--retain-succeeded",
            "2h",
            "--retain-dead",
            "3h",
            "--retain-cancelled",
            "4h",
        ]);
        assert_eq!(
            (c.retention, c.retain_dead, c.retain_cancelled),
            (hours(2), hours(3), hours(4))
        );
    }

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
}
