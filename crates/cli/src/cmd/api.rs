//! `weir api`: one API node.

use anyhow::Context;

use crate::cluster::serve_api_node;
use crate::config::ApiArgs;
use crate::registration::Registration;

pub async fn run(
    args: ApiArgs,
    file_types: &[(String, weir_core::TaskTypeConfig)],
    check: bool,
) -> anyhow::Result<()> {
    let options = args.store.options(None)?;
    let task_types = args.types.registry(file_types)?;
    let mut config = args
        .api
        .config(String::new(), args.store.db_busy_timeout, task_types)?;
    config.max_workflow_steps = args.types.max_workflow_steps;
    if check {
        return super::checked("api");
    }
    crate::config::warn_what_is_open(&config.task_types, Some(&config));
    let store = weir_store_sql::open(&options)
        .await
        .with_context(|| format!("opening {}", options.database_url))?;
    let node_id = args
        .node_id
        .clone()
        .unwrap_or_else(|| format!("api-{}", std::process::id()));
    let listener =
        crate::listen::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr()?;
    let shutdown = crate::signal::shutdown();
    println!("weir: {node_id} listening on http://{local}");
    let registration = match &args.register_with {
        Some(lb) => {
            let advertise = args
                .advertise_url
                .clone()
                .unwrap_or_else(|| format!("http://{local}"));
            let token = args.admin_token.as_deref().unwrap_or_default();
            let r = Registration::register(lb, token, &advertise).await?;
            println!("weir: {node_id} registered with {lb} as {advertise}");
            Some(r)
        }
        None => None,
    };
    // On a signal: drain at the lb first (no new requests), then stop serving
    // (in-flight requests finish), then leave the lb.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let readiness = config.readiness.clone();
    let mut serving = tokio::spawn(serve_api_node(
        listener,
        weir_api::ApiConfig { node_id, ..config },
        store,
        async move {
            let _ = stop_rx.await;
        },
    ));
    tokio::select! {
        _ = shutdown => {}
        ended = &mut serving => return ended.context("API node task")?,
    }
    readiness.drain();
    if !args.shutdown_delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(args.shutdown_delay) => {}
            ended = &mut serving => return ended.context("API node task")?,
        }
    }
    if let Some(r) = &registration {
        r.drain().await;
    }
    let _ = stop_tx.send(());
    let served = serving.await.context("API node task")?;
    if let Some(r) = &registration {
        r.deregister().await;
    }
    served
}
