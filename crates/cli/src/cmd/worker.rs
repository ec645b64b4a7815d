//! `weir worker`: one worker.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerArgs;

pub async fn run(
    args: WorkerArgs,
    file_types: &[(String, weir_core::TaskTypeConfig)],
    check: bool,
) -> anyhow::Result<()> {
    let options = args.store.options(None)?;
    let task_types = args.worker.task_types(args.types.registry(file_types)?)?;
    let worker_id = args
        .worker_id
        .clone()
        .unwrap_or_else(|| format!("worker-{}", std::process::id()));
    let mut config = args
        .worker
        .config(worker_id.clone(), args.concurrency.into(), task_types)?;
    config.max_workflow_steps = args.types.max_workflow_steps;
    args.ingest.buffer()?;
    if check {
        return super::checked("worker");
    }
    let store = weir_store_sql::open_shared(&options)
        .await
        .with_context(|| format!("opening {}", options.database_url))?;
    crate::config::warn_what_is_open(&config.task_types, None);
    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    let readiness = weir_store::Readiness::default();
    let draining = readiness.clone();
    let signal = crate::signal::shutdown();
    tokio::spawn(async move {
        signal.await;
        draining.drain();
        signal_stop.cancel();
    });
    let metrics_stop = CancellationToken::new();
    if let Some(addr) = args.metrics_listen {
        let listener = crate::listen::bind(addr)
            .with_context(|| format!("binding the metrics listener {addr}"))?;
        println!(
            "weir: {worker_id} serving metrics on http://{}/metrics",
            listener.local_addr()?
        );
        weir_telemetry::install();
        // Served through the drain too: it ends when the worker has stopped.
        let stopped = metrics_stop.clone();
        let app = weir_telemetry::router().merge(crate::probes::router(readiness, store.clone()));
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "metrics listener stopped");
            }
        });
    }
    println!(
        "weir: {worker_id} running up to {} tasks of types {}",
        args.concurrency,
        config.handlers.type_names().join(", ")
    );
    // In buffered ingest, each worker is also a consumer of the event stream.
    let consumers = match args.ingest.buffer()? {
        Some(b) => {
            println!(
                "weir: {worker_id} moving buffered events from {} to the database ({} consumers)",
                b.stream, b.consumers_per_worker
            );
            crate::cluster::spawn_ingest_consumers(&store, &b, &worker_id, &stop)
        }
        None => Vec::new(),
    };
    let report = weir_worker::run(store, config, stop).await;
    metrics_stop.cancel();
    for consumer in consumers {
        consumer.await.context("ingest consumer task")?;
    }
    println!(
        "weir: {worker_id} stopped: {} processed, {} failed, {} released",
        report.processed, report.failed, report.released
    );
    Ok(())
}
