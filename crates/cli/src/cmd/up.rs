//! `weir up`: the whole system in one process.

use anyhow::Context;

use weir_core::TaskTypeConfig;

use crate::cluster::{Cluster, ClusterSpec};
use crate::config::UpArgs;

pub async fn run(
    mut args: UpArgs,
    file_types: &[(String, TaskTypeConfig)],
    check: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    args.types
        .key_from_file(&args.data_dir.join("secrets.key"))?;
    let task_types = args.worker.task_types(args.types.registry(file_types)?)?;
    let (worker_token, token_generated) = match args.api.worker_token.clone() {
        Some(t) if !t.is_empty() => (t, false),
        _ => (hex::encode(rand::random::<[u8; 16]>()), true),
    };
    let default_url = format!("sqlite://{}", args.data_dir.join("weir.db").display());
    let options = args.store.options(Some(default_url))?;
    let (admin_token, generated) = args.balancer.admin_token();
    let mut lb = args.balancer.config(Vec::new(), admin_token.clone());
    lb.tls = args.tls.tls_settings()?;
    let listening: Vec<_> = std::iter::once(args.listen)
        .chain(args.tls.tls_listen)
        .collect();
    println!("weir: lb {}", lb.guard_admin(&listening));
    let spec = ClusterSpec {
        listen: args.listen,
        tls_listen: args.tls.tls_listen,
        api_nodes: args.api_nodes.into(),
        workers: args.workers.into(),
        api: weir_api::ApiConfig {
            worker_token: Some(worker_token.clone()),
            retry_backoff: args.worker.retry_backoff,
            cache_ttl: args.worker.cache_ttl,
            max_workflow_steps: args.types.max_workflow_steps,
            ..args.api.config(
                String::new(),
                args.store.db_busy_timeout,
                task_types.clone(),
            )?
        },
        worker: weir_worker::WorkerConfig {
            max_workflow_steps: args.types.max_workflow_steps,
            ..args.worker.config(
                String::new(),
                args.worker_concurrency.into(),
                task_types.clone(),
            )?
        },
        lb,
    };
    weir_lb::Lb::new(spec.lb.clone()).map_err(anyhow::Error::msg)?;
    if check {
        return super::checked("up");
    }
    crate::config::warn_what_is_open(&task_types, Some(&spec.api));
    let store = weir_store_sql::open(&options)
        .await
        .with_context(|| format!("opening {}", options.database_url))?;
    // Before any "listening" line: a SIGTERM from then on drains.
    let shutdown = crate::signal::shutdown();
    let cluster = Cluster::start(spec, store).await?;

    println!("weir up: store {}", options.database_url);
    if options.database_url.starts_with("sqlite:") {
        println!("weir up: {}", options.sqlite_synchronous.promise());
    }
    println!(
        "weir: lb listening on http://{} (strategy {})",
        cluster.lb_addr, args.balancer.strategy
    );
    if let Some(addr) = cluster.lb_tls_addr {
        println!("weir: lb listening on https://{addr}");
    }
    println!("weir: dashboard on http://{}/dashboard", cluster.lb_addr);
    for (id, addr) in &cluster.api_nodes {
        println!("weir: {id} listening on http://{addr}");
    }
    println!(
        "weir: {} workers ({}) running up to {} tasks each",
        cluster.worker_ids.len(),
        cluster.worker_ids.join(", "),
        args.worker_concurrency
    );
    if generated {
        println!(
            "weir: admin token {admin_token} (set --admin-token or WEIR_ADMIN_TOKEN to choose one)"
        );
    }
    if token_generated {
        println!(
            "weir: worker token {worker_token} for external workers (set --worker-token or WEIR_WORKER_TOKEN to choose one)"
        );
    }
    let own: Vec<String> = task_types
        .iter()
        .filter(|t| !matches!(t.spec.handler, weir_core::HandlerSpec::Builtin(_)))
        .map(|t| format!("{} ({})", t.spec.name, t.spec.handler.name()))
        .collect();
    if !own.is_empty() {
        println!("weir: task types {}", own.join(", "));
    }
    println!("weir: ready; Ctrl-C or SIGTERM stops");

    shutdown.await;
    cluster.shutdown().await?;
    println!("weir: stopped");
    Ok(())
}
