//! `weir lb`: the load balancer alone, one single-threaded runtime per core.
//!
//! Each serving thread has its own `SO_REUSEPORT` listener (the kernel spreads
//! connections), its own runtime and its own upstream connection pool, so a
//! request never crosses threads: no cross-thread wake-ups, no shared pool
//! lock. The backend set, stats, strategy and rate limits are shared (atomics
//! and lock-free swaps). Health checks and housekeeping run on the main runtime.
//!
//! With `--handover-socket`, a new binary takes the listeners of the running
//! one and it drains ([`weir_lb::server::handover`]): upgrades drop no connection.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use weir_lb::server::handover::ListenerKind;

use crate::config::LbArgs;

pub async fn run(args: LbArgs, check: bool) -> anyhow::Result<()> {
    let (admin_token, generated) = args.balancer.admin_token();
    let lb = build_lb(&args, &admin_token)?;
    if check {
        return super::checked("lb");
    }
    // Before any "listening" line: a SIGTERM from then on drains.
    let shutdown = crate::signal::shutdown();
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // A running lb at the handover socket gives this one its listeners.
    let mut inherited = match &args.handover_socket {
        Some(path) => weir_lb::server::handover::Inherited::take_over(path)?,
        None => None,
    };
    let Listeners {
        plain,
        tls,
        admin: admin_listener,
    } = bind_listeners(&args, inherited.as_mut(), threads)?;
    tokio::spawn(reload_on_sighup(lb.clone()));
    if generated {
        println!("weir: admin token {admin_token}");
    }

    let background = weir_lb::spawn_background(&lb);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Copies of the listeners for a successor, offered once this process
    // serves: a process that fails before then leaves its predecessor's
    // socket file alone.
    let to_offer = match args.handover_socket.is_some() {
        true => copies(&plain, &tls, admin_listener.as_ref())?,
        false => Vec::new(),
    };
    let admin = match admin_listener {
        Some(listener) => {
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(weir_lb::serve_admin(
                TcpListener::from_std(listener)?,
                lb.clone(),
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            )))
        }
        None => None,
    };
    let workers = spawn_serving_threads(&lb, plain, tls, threads, &stop_rx)?;
    if let Some(inherited) = inherited {
        tell_predecessor(inherited);
    }
    let offered = args
        .handover_socket
        .as_deref()
        .and_then(|path| offer(path, to_offer));
    let handed_over = wait_for_successor(offered);
    let stopped_by = tokio::select! {
        () = shutdown => "signal",
        () = handed_over => "handover",
    };
    lb.draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // A successor already serves new connections: no need to wait for
    // routes to this process to go.
    if stopped_by == "signal" {
        tokio::time::sleep(args.shutdown_delay).await;
    } else {
        println!("weir: lb handed its listeners over; draining");
    }
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

/// The balancer the flags describe.
fn build_lb(args: &LbArgs, admin_token: &str) -> anyhow::Result<std::sync::Arc<weir_lb::Lb>> {
    let mut config = args
        .balancer
        .config(args.backends.clone(), admin_token.to_owned());
    config.admin_on_main = args.admin_listen.is_none();
    config.backends_dns = args.backends_dns.clone();
    config.dns_interval = args.dns_interval;
    config.dns_server = args.dns_server;
    config.proxy_protocol = args.proxy_protocol;
    config.send_proxy_protocol = args.send_proxy_protocol;
    config.tls = args.tls.tls_settings()?;
    (config.edge_headers, config.redirect_http) = args.edge_settings()?;
    config.backend_tls = args.backend_tls();
    let listening: Vec<_> = std::iter::once(args.listen)
        .chain(args.tls.tls_listen)
        .collect();
    println!("weir: lb {}", config.guard_admin(&listening));
    weir_lb::Lb::new(config).map_err(anyhow::Error::msg)
}

/// What `weir lb` listens on.
struct Listeners {
    /// `--listen`, one or more per serving thread.
    plain: Vec<std::net::TcpListener>,
    /// `--tls-listen`, as many.
    tls: Vec<std::net::TcpListener>,
    /// `--admin-listen`.
    admin: Option<std::net::TcpListener>,
}

/// The listeners: taken over from `inherited`, or bound.
fn bind_listeners(
    args: &LbArgs,
    mut inherited: Option<&mut weir_lb::server::handover::Inherited>,
    threads: usize,
) -> anyhow::Result<Listeners> {
    let from = if inherited.is_some() {
        " (taken over)"
    } else {
        ""
    };
    let plain = listeners(
        inherited.as_deref_mut(),
        ListenerKind::Plain,
        args.listen,
        threads,
    )
    .with_context(|| format!("binding {}", args.listen))?;
    println!(
        "weir: lb listening on http://{}{from} ({threads} threads)",
        plain[0].local_addr()?
    );
    let tls = match args.tls.tls_listen {
        Some(tls_addr) => {
            let tls = listeners(
                inherited.as_deref_mut(),
                ListenerKind::Tls,
                tls_addr,
                threads,
            )
            .with_context(|| format!("binding --tls-listen {tls_addr}"))?;
            println!(
                "weir: lb listening on https://{}{from}",
                tls[0].local_addr()?
            );
            tls
        }
        None => Vec::new(),
    };
    let admin_listener = match args.admin_listen {
        Some(admin_addr) => {
            let listener = listeners(inherited, ListenerKind::Admin, admin_addr, 1)
                .with_context(|| format!("binding the admin listener {admin_addr}"))?
                .swap_remove(0);
            println!("weir: lb admin API on http://{}", listener.local_addr()?);
            Some(listener)
        }
        None => None,
    };
    Ok(Listeners {
        plain,
        tls,
        admin: admin_listener,
    })
}

/// Copies of the listening sockets, each with its kind.
fn copies(
    plain: &[std::net::TcpListener],
    tls: &[std::net::TcpListener],
    admin: Option<&std::net::TcpListener>,
) -> std::io::Result<Vec<(ListenerKind, std::net::TcpListener)>> {
    (plain.iter().map(|l| (ListenerKind::Plain, l)))
        .chain(tls.iter().map(|l| (ListenerKind::Tls, l)))
        .chain(admin.map(|l| (ListenerKind::Admin, l)))
        .map(|(kind, l)| Ok((kind, l.try_clone()?)))
        .collect()
}

/// This process serves on the taken sockets: the old one may stop accepting.
fn tell_predecessor(inherited: weir_lb::server::handover::Inherited) {
    match inherited.ready() {
        Ok(closed) => {
            for addr in closed {
                tracing::warn!(%addr, "handover: not configured here any more; closed");
            }
        }
        // It went away by itself: nothing to tell it.
        Err(e) => tracing::warn!(error = %e, "handover: the old process did not hear ready"),
    }
}

/// Offers the listeners at `path` for the next upgrade. This process serves
/// already (its predecessor drains): a socket that cannot be offered costs
/// the next upgrade, not this process.
fn offer(
    path: &std::path::Path,
    listeners: Vec<(ListenerKind, std::net::TcpListener)>,
) -> Option<weir_lb::server::handover::Offer> {
    let offered: Vec<_> = listeners.iter().map(|(kind, l)| (*kind, l)).collect();
    weir_lb::server::handover::Offer::bind(path, &offered)
        .inspect_err(|e| tracing::error!(error = %e, "handover: no offer for a successor"))
        .ok()
}

/// Completes when a successor serves on this lb's listeners; never without
/// a handover socket.
async fn wait_for_successor(offer: Option<weir_lb::server::handover::Offer>) {
    let Some(offer) = offer else {
        return std::future::pending().await;
    };
    let (done_tx, done) = tokio::sync::oneshot::channel();
    // A thread of its own: the offer blocks on its socket, and must not
    // hold the runtime's shutdown.
    let spawned = std::thread::Builder::new()
        .name("weir-lb-handover".into())
        .spawn(move || {
            offer.wait_for_successor();
            let _ = done_tx.send(());
        });
    if spawned.is_err() || done.await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// `count` listeners of `kind` on `addr`, sharing it by `SO_REUSEPORT`: the
/// ones taken over from a running lb first (all of them, even more than
/// `count`: a connection queued on any of them must be accepted).
fn listeners(
    inherited: Option<&mut weir_lb::server::handover::Inherited>,
    kind: ListenerKind,
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut all = inherited.map_or_else(Vec::new, |i| i.take(kind, addr));
    // The first fixes the port (it may be 0); the others join it.
    let addr = match all.first() {
        Some(l) => l.local_addr()?,
        None => {
            let first = crate::listen::bind_shared(addr)?.into_std()?;
            let addr = first.local_addr()?;
            all.push(first);
            addr
        }
    };
    while all.len() < count {
        all.push(crate::listen::bind_shared(addr)?.into_std()?);
    }
    Ok(all)
}

/// One single-threaded runtime per serving thread, each accepting on its
/// share of the listeners.
fn spawn_serving_threads(
    lb: &std::sync::Arc<weir_lb::Lb>,
    plain: Vec<std::net::TcpListener>,
    tls: Vec<std::net::TcpListener>,
    threads: usize,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<anyhow::Result<()>>>> {
    let mut shares: Vec<Vec<(bool, std::net::TcpListener)>> =
        (0..threads).map(|_| Vec::new()).collect();
    let tagged = plain
        .into_iter()
        .map(|l| (false, l))
        .enumerate()
        .chain(tls.into_iter().map(|l| (true, l)).enumerate());
    for (i, listener) in tagged {
        shares[i % threads].push(listener);
    }
    let (spread, inboxes) = weir_lb::server::spread::Spread::new(threads);
    lb.set_spread(spread);
    let mut workers = Vec::new();
    for ((i, share), inbox) in shares.into_iter().enumerate().zip(inboxes) {
        let (lb, stop) = (lb.clone(), stop.clone());
        let worker = std::thread::Builder::new()
            .name(format!("weir-lb-{i}"))
            .spawn(move || -> anyhow::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("building a serving runtime")?;
                rt.block_on(async move {
                    // Ends with the runtime.
                    tokio::spawn(weir_lb::admission::lag::watch(lb.lag.clone()));
                    let mut served = tokio::task::JoinSet::new();
                    let seat = inbox.seat();
                    let stopped = |mut stop: watch::Receiver<bool>| async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    for (tls, listener) in share {
                        let listener = TcpListener::from_std(listener)?;
                        let (lb, seat) = (lb.clone(), seat.clone());
                        let shutdown = stopped(stop.clone());
                        served.spawn(weir_lb::serve_seated(listener, lb, shutdown, tls, seat));
                    }
                    let inbox = weir_lb::serve_inbox(inbox, lb.clone(), stopped(stop.clone()));
                    served.spawn(async move {
                        inbox.await;
                        Ok(())
                    });
                    while let Some(done) = served.join_next().await {
                        done.context("a listener's accept loop panicked")??;
                    }
                    anyhow::Ok(())
                })?;
                Ok(())
            })
            .context("starting a serving thread")?;
        workers.push(worker);
    }
    Ok(workers)
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
