//! `weir lb`: the load balancer alone, one single-threaded runtime per core.
//!
//! Each serving thread has its own `SO_REUSEPORT` listener (the kernel spreads
//! connections), its own runtime and its own upstream connection pool, so a
//! request never crosses threads: no cross-thread wake-ups, no shared pool
//! lock. The backend set, stats, strategy and rate limits are shared (atomics
//! and lock-free swaps). Health checks and housekeeping run on the main runtime.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::config::LbArgs;

pub async fn run(args: LbArgs, check: bool) -> anyhow::Result<()> {
    let (admin_token, generated) = args.balancer.admin_token();
    let mut config = args
        .balancer
        .config(args.backends.clone(), admin_token.clone());
    config.admin_on_main = args.admin_listen.is_none();
    config.backends_dns = args.backends_dns.clone();
    config.dns_interval = args.dns_interval;
    config.dns_server = args.dns_server;
    config.proxy_protocol = args.proxy_protocol;
    config.send_proxy_protocol = args.send_proxy_protocol;
    config.tls = args.tls_settings()?;
    (config.edge_headers, config.redirect_http) = args.edge_settings()?;
    config.backend_tls = args.backend_tls();
    let lb = weir_lb::Lb::new(config).map_err(anyhow::Error::msg)?;
    if check {
        return super::checked("lb");
    }
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // The first listener fixes the port (it may be 0); the others join it.
    let first =
        reuseport_listener(args.listen).with_context(|| format!("binding {}", args.listen))?;
    let addr = first.local_addr()?;
    println!("weir: lb listening on http://{addr} ({threads} threads)");
    let mut tls_listeners = Vec::new();
    if let Some(tls_addr) = args.tls_listen {
        let first = reuseport_listener(tls_addr)
            .with_context(|| format!("binding --tls-listen {tls_addr}"))?;
        let tls_addr = first.local_addr()?;
        println!("weir: lb listening on https://{tls_addr}");
        tls_listeners.push(first.into_std()?);
        for _ in 1..threads {
            tls_listeners.push(reuseport_listener(tls_addr)?.into_std()?);
        }
    }
    tokio::spawn(reload_on_sighup(lb.clone()));
    if generated {
        println!("weir: admin token {admin_token}");
    }

    let background = weir_lb::spawn_background(&lb);
    let (stop_tx, stop_rx) = watch::channel(false);
    let admin = match args.admin_listen {
        Some(admin_addr) => {
            let listener = TcpListener::bind(admin_addr)
                .await
                .with_context(|| format!("binding the admin listener {admin_addr}"))?;
            println!("weir: lb admin API on http://{}", listener.local_addr()?);
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(weir_lb::serve_admin(
                listener,
                lb.clone(),
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            )))
        }
        None => None,
    };
    let mut listeners = vec![first.into_std()?];
    for _ in 1..threads {
        listeners.push(reuseport_listener(addr)?.into_std()?);
    }
    let mut workers = Vec::new();
    let mut tls_listeners = tls_listeners.into_iter();
    for (i, listener) in listeners.into_iter().enumerate() {
        let (lb, mut stop) = (lb.clone(), stop_rx.clone());
        let tls_listener = tls_listeners.next();
        let worker = std::thread::Builder::new()
            .name(format!("weir-lb-{i}"))
            .spawn(move || -> anyhow::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("building a serving runtime")?;
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener)?;
                    let mut tls_stop = stop.clone();
                    let shutdown = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    let Some(tls_listener) = tls_listener else {
                        return weir_lb::serve(listener, lb, shutdown).await;
                    };
                    let tls_listener = TcpListener::from_std(tls_listener)?;
                    let tls_shutdown = async move {
                        let _ = tls_stop.wait_for(|s| *s).await;
                    };
                    let (plain, tls) = tokio::join!(
                        weir_lb::serve(listener, lb.clone(), shutdown),
                        weir_lb::serve_tls(tls_listener, lb, tls_shutdown)
                    );
                    plain.and(tls)
                })?;
                Ok(())
            })
            .context("starting a serving thread")?;
        workers.push(worker);
    }
    crate::signal::shutdown().await;
    lb.draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(args.shutdown_delay).await;
    let _ = stop_tx.send(true);
    let joined = tokio::task::spawn_blocking(move || {
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a serving thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<()>>>()
    })
    .await?;
    background.abort();
    if let Some(admin) = admin {
        admin.await??;
    }
    joined?;
    Ok(())
}

/// SIGHUP: the command line and config file are read again and the
/// backends and rate limits applied in place; the certificate files are
/// read again. Anything that does not load keeps what is in use, and the
/// lb logs why.
async fn reload_on_sighup(lb: std::sync::Arc<weir_lb::Lb>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        if let Some(tls) = &lb.tls {
            tls.reload_or_keep();
        }
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let fresh = match crate::config_file::parse_cli(&args) {
            Ok(cli) => cli,
            Err(e) => {
                tracing::error!(error = %e, "reload: the configuration does not load; keeping the one in use");
                continue;
            }
        };
        let crate::config::Command::Lb(args) = fresh.command else {
            continue;
        };
        match lb.reload_backends(&args.backends) {
            Ok(r) => tracing::info!(
                added = r.added,
                removed = r.removed,
                "reload: backends applied"
            ),
            Err(e) => tracing::error!(error = %e, "reload: backends kept"),
        }
        let limits = args.balancer.config(Vec::new(), String::new()).rate_limit;
        if let Err(e) = lb.rate_limits.set(limits) {
            tracing::error!(error = %e, "reload: rate limits kept");
        }
    }
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
