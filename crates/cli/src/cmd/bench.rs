//! `weir bench`: load-test a running system.

use weir_bench::{http, idle, tasks, upstream};

use crate::config::BenchCommand;

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    // Distinct inputs per run, so no task is answered from an earlier run's cache.
    let run_id = format!("{:x}", rand::random::<u64>());
    match command {
        BenchCommand::Tasks(args) => {
            let report = tasks::run(&tasks::TasksBench {
                target: args.target.target.trim_end_matches('/').to_string(),
                tasks: args.tasks,
                concurrency: args.concurrency.max(1),
                run_id,
                timeout: args.timeout,
                rate: args.rate,
                task_type: args.task_type.clone(),
            })
            .await?;
            if args.target.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "tasks: {} md5 tasks, {:.0} tasks/s end to end ({:.0} submits/s)",
                    report.tasks, report.tasks_per_sec, report.submit_per_sec
                );
                println!("submit-to-start: {}", report.submit_to_start);
                println!("submit round trip: {}", report.submit_rtt);
            }
        }
        BenchCommand::Idle(args) => {
            let report = idle::run(&idle::IdleBench {
                target: args.target.target.trim_end_matches('/').to_string(),
                samples: args.samples.max(1),
                gap: args.gap,
                run_id,
            })
            .await?;
            if args.target.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("idle submit-to-start: {}", report.submit_to_start);
            }
        }
        BenchCommand::Http(args) => {
            let report = http::run(&http::RateBench {
                url: args.url,
                rate: args.rate,
                duration: args.duration,
                connections: args.connections,
            })
            .await;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{} requests: {}", report.requests, report.latency);
                println!("statuses (0 = transport error): {:?}", report.statuses);
            }
        }
        BenchCommand::Burndown(args) => super::burndown::run(args).await?,
        BenchCommand::Upstream(args) => {
            let spec = upstream::UpstreamSpec {
                listen: args.listen,
                delay: std::time::Duration::from_millis(args.delay_ms),
                error_per_mille: (args.error_percent * 10.0).round().clamp(0.0, 1000.0) as u64,
                capacity: args.capacity.map(|c| c as usize),
            };
            let serving = upstream::run(spec, |addr| {
                println!("weir: upstream listening on http://{addr}")
            });
            tokio::select! {
                served = serving => served?,
                _ = crate::signal::shutdown() => {}
            }
        }
    }
    Ok(())
}
