//! `weir api`: one API node.

use anyhow::Context;
use tokio::net::TcpListener;

use crate::cluster::serve_api_node;
use crate::config::ApiArgs;

pub async fn run(args: ApiArgs) -> anyhow::Result<()> {
    let options = args.store.options(None)?;
    let store = weir_store::open(&options)
        .await
        .with_context(|| format!("opening {}", options.database_url))?;
    let node_id = args
        .node_id
        .clone()
        .unwrap_or_else(|| format!("api-{}", std::process::id()));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!(
        "weir: {node_id} listening on http://{}",
        listener.local_addr()?
    );
    serve_api_node(
        listener,
        args.api.config(node_id, args.store.db_busy_timeout),
        store,
        crate::signal::shutdown(),
    )
    .await
}
