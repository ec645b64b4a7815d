//! `weir up`: the whole system in one process.

use anyhow::Context;

use crate::cluster::{Cluster, ClusterSpec};
use crate::config::UpArgs;

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let default_url = format!("sqlite://{}", args.data_dir.join("weir.db").display());
    let options = args.store.options(Some(default_url))?;
    let store = weir_store::open(&options)
        .await
        .with_context(|| format!("opening {}", options.database_url))?;
    let (admin_token, generated) = args.balancer.admin_token();
    let spec = ClusterSpec {
        listen: args.listen,
        api_nodes: args.api_nodes.into(),
        workers: args.workers.into(),
        api: args.api.config(String::new(), args.store.db_busy_timeout)?,
        worker: args
            .worker
            .config(String::new(), args.worker_concurrency.into()),
        lb: args.balancer.config(Vec::new(), admin_token.clone()),
    };
    let cluster = Cluster::start(spec, store).await?;

    println!("weir up: store {}", options.database_url);
    println!(
        "weir: lb listening on http://{} (strategy {})",
        cluster.lb_addr, args.balancer.strategy
    );
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
    println!("weir: ready; Ctrl-C or SIGTERM stops");

    crate::signal::shutdown().await;
    cluster.shutdown().await?;
    println!("weir: stopped");
    Ok(())
}
