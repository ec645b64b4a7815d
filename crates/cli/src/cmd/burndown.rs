//! `weir bench burndown`: River's burn-down — insert many no-op tasks, then
//! let workers drain them, and time both. The workers run in this process on
//! the real store, so what is measured is the queue: claim, complete, commit.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use weir_core::{Builtin, TaskId, TaskInsertParams};

use crate::config::BenchBurndownArgs;

/// Rows one insert statement carries.
const INSERT_BATCH: usize = 5_000;

#[derive(Serialize)]
struct BurndownReport {
    backend: &'static str,
    tasks: usize,
    workers: usize,
    concurrency: usize,
    insert_per_sec: f64,
    work_per_sec: f64,
    /// CPU µs per task of this process in each phase.
    insert_cpu_us: Option<f64>,
    work_cpu_us: Option<f64>,
    /// The same for the `--cpu-of` processes (the store's server).
    store_insert_cpu_us: Option<f64>,
    store_work_cpu_us: Option<f64>,
}

pub async fn run(args: BenchBurndownArgs) -> anyhow::Result<()> {
    let options = args.store.options(None)?;
    let store = weir_store_sql::open_shared(&options)
        .await
        .with_context(|| format!("opening {}", options.database_url))?;
    let before = store.task_counts().await?;
    anyhow::ensure!(
        before.pending() == 0,
        "the store already holds {} unfinished tasks",
        before.pending()
    );

    let cpu = CpuClock::new(&args.cpu_of, args.tasks);
    let started = Instant::now();
    let now = Utc::now();
    let mut left = args.tasks;
    while left > 0 {
        let n = left.min(INSERT_BATCH);
        let batch: Vec<TaskInsertParams> = (0..n)
            .map(|_| TaskInsertParams {
                id: TaskId::new(),
                kind: Builtin::Noop.into(),
                input: json!({}),
                max_attempts: 3,
                priority: 0,
                cache_key: None,
                run_at: now,
                now,
                queue: "default".into(),
                concurrency_key: None,
                backoff: None,
                timeout: None,
                tenant: None,
                trace: None,
            })
            .collect();
        store.task_insert_many(&batch).await?;
        left -= n;
    }
    let insert_secs = started.elapsed().as_secs_f64();
    let cpu_after_insert = cpu.now();

    let stop = CancellationToken::new();
    let mut workers = Vec::new();
    let started = Instant::now();
    for i in 0..args.workers.max(1) {
        let mut config = weir_worker::WorkerConfig::new(format!("burndown-{i}"));
        config.concurrency = args.concurrency.max(1);
        config.poll_interval = Duration::from_millis(50);
        config.retention = args.retention;
        config.retain_dead = args.retention;
        config.retain_cancelled = args.retention;
        workers.push(tokio::spawn(weir_worker::run(
            store.clone(),
            config,
            stop.clone(),
        )));
    }
    // Counting scans the live rows (only those: finished ones may be
    // millions): with a large backlog, counting every 10 ms would take a
    // core from the workers being measured. The pause shrinks with the
    // backlog, so the end is still seen within 10 ms.
    loop {
        let depths = store.queue_depths().await?;
        let pending: i64 = depths.iter().map(|d| d.queued + d.running).sum();
        if pending == 0 {
            break;
        }
        let pause = Duration::from_micros(pending as u64 * 20);
        tokio::time::sleep(pause.clamp(Duration::from_millis(10), Duration::from_secs(1))).await;
    }
    let work_secs = started.elapsed().as_secs_f64();
    let cpu_after_work = cpu.now();
    stop.cancel();
    for w in workers {
        w.await?;
    }
    let report = BurndownReport {
        backend: store.backend(),
        tasks: args.tasks,
        workers: args.workers.max(1),
        concurrency: args.concurrency.max(1),
        insert_per_sec: args.tasks as f64 / insert_secs.max(1e-9),
        work_per_sec: args.tasks as f64 / work_secs.max(1e-9),
        insert_cpu_us: cpu.per_task(cpu.start.0, cpu_after_insert.0),
        work_cpu_us: cpu.per_task(cpu_after_insert.0, cpu_after_work.0),
        store_insert_cpu_us: cpu.per_task(cpu.start.1, cpu_after_insert.1),
        store_work_cpu_us: cpu.per_task(cpu_after_insert.1, cpu_after_work.1),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "burndown on {}: {} noop tasks inserted at {:.0}/s, worked at {:.0}/s ({} workers x {})",
            report.backend, report.tasks, report.insert_per_sec, report.work_per_sec, report.workers, report.concurrency
        );
        if let Some(us) = report.work_cpu_us {
            println!("CPU per task worked: this process {us:.1} µs");
        }
    }
    Ok(())
}

/// This process's CPU time and the `--cpu-of` processes', read at each
/// phase's end.
struct CpuClock {
    others: Vec<u32>,
    tasks: usize,
    start: (Option<Duration>, Option<Duration>),
}

impl CpuClock {
    fn new(others: &[u32], tasks: usize) -> Self {
        let mut clock = CpuClock {
            others: others.to_vec(),
            tasks,
            start: (None, None),
        };
        clock.start = clock.now();
        clock
    }

    /// (this process, the others) so far.
    fn now(&self) -> (Option<Duration>, Option<Duration>) {
        let others = match self.others.is_empty() {
            true => None,
            false => weir_bench::cpu::tree_cpu_time(&self.others),
        };
        (weir_bench::cpu::own_cpu_time(), others)
    }

    fn per_task(&self, from: Option<Duration>, to: Option<Duration>) -> Option<f64> {
        let spent = to?.checked_sub(from?)?;
        Some(spent.as_secs_f64() * 1e6 / self.tasks.max(1) as f64)
    }
}
