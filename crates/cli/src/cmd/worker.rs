//! `weir worker`: one worker.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerArgs;

pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let options = args.store.options(None)?;
    let store = weir_store::open(&options)
        .await
        .with_context(|| format!("opening {}", options.database_url))?;
    let worker_id = args
        .worker_id
        .clone()
        .unwrap_or_else(|| format!("worker-{}", std::process::id()));
    let config = args
        .worker
        .config(worker_id.clone(), args.concurrency.into());
    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        crate::signal::shutdown().await;
        signal_stop.cancel();
    });
    println!("weir: {worker_id} running up to {} tasks", args.concurrency);
    // In buffered ingest, each worker is also a consumer of the event stream.
    let consumer = args.ingest.buffer()?.map(|b| {
        println!(
            "weir: {worker_id} moving buffered events from {} to the database",
            b.stream
        );
        crate::cluster::spawn_ingest_consumer(
            store.clone(),
            b.consumer(worker_id.clone()),
            stop.clone(),
        )
    });
    let report = weir_worker::run(store, config, stop).await;
    if let Some(consumer) = consumer {
        consumer.await.context("ingest consumer task")?;
    }
    println!(
        "weir: {worker_id} stopped: {} processed, {} failed, {} released",
        report.processed, report.failed, report.released
    );
    Ok(())
}
