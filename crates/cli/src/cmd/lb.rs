//! `weir lb`: the load balancer alone.

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::LbArgs;

pub async fn run(args: LbArgs) -> anyhow::Result<()> {
    let (admin_token, generated) = args.balancer.admin_token();
    let config = args
        .balancer
        .config(args.backends.clone(), admin_token.clone());
    let lb = weir_lb::Lb::new(config).map_err(anyhow::Error::msg)?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!("weir: lb listening on http://{}", listener.local_addr()?);
    if generated {
        println!("weir: admin token {admin_token}");
    }
    weir_lb::run(listener, lb, crate::signal::shutdown()).await?;
    Ok(())
}
