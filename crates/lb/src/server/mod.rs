//! Accepting client connections (HTTP/1.1 and h2c) and shutting down gracefully.

pub mod handover;
pub mod spread;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::Router;
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

use crate::edge::client_io::ClientIo;
use crate::request::rules::HeadRefusal;
use crate::server::spread::{Handed, Inbox, LiveGuard, Placement, Seat};
use crate::state::Lb;
use crate::{admin, backends::health, http1, proxy};

/// How often certificate files are checked for a renewal.
const CERTIFICATE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// Bytes of an answer buffered per HTTP/2 stream beyond what the socket
/// takes: four frames.
const H2_SEND_BUFFER: usize = 64 * 1024;
/// How often idle clients' rate-limit state is dropped.
const HOUSEKEEPING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves until `shutdown` completes: stops accepting, lets open requests
/// finish within the grace period, then returns.
pub async fn run(
    listener: TcpListener,
    lb: Arc<Lb>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let background = spawn_background(&lb);
    let lag = tokio::spawn(crate::admission::lag::watch(lb.lag.clone()));
    let served = serve(listener, lb, shutdown).await;
    background.abort();
    lag.abort();
    served
}

/// Serves only the admin API (`--admin-listen`), until `shutdown` completes.
pub async fn serve_admin(
    listener: TcpListener,
    lb: Arc<Lb>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = admin::router(lb).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The balancer's background services: health checks and housekeeping.
/// Aborted when the returned handle is.
pub fn spawn_background(lb: &Arc<Lb>) -> tokio::task::AbortHandle {
    let lb = lb.clone();
    tokio::spawn(async move {
        tokio::join!(
            crate::backends::discovery::run(
                lb.clone(),
                lb.config.backends_dns.clone(),
                lb.config.dns_interval,
                lb.config.dns_server,
            ),
            health::run(lb.clone()),
            sample_throughput(lb.clone()),
            watch_certificates(lb.clone()),
            housekeep(lb)
        );
    })
    .abort_handle()
}

/// Accepts and serves connections on `listener` until `shutdown` completes,
/// without the background services: several of these (one per core, each on
/// its own single-threaded runtime and `SO_REUSEPORT` listener) can share one
/// [`Lb`] next to one [`spawn_background`].
pub async fn serve(
    listener: TcpListener,
    lb: Arc<Lb>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    accept_loop(listener, lb, shutdown, false, None).await
}

/// [`serve`] for HTTPS: each connection's TLS handshake first, with the
/// lb's certificates ([`crate::LbConfig::tls`]); HTTP/1.1 then takes the
/// fast path, and clients that chose `h2` by ALPN the general path.
pub async fn serve_tls(
    listener: TcpListener,
    lb: Arc<Lb>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if lb.tls.is_none() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a TLS listener needs certificates (--tls-cert and --tls-key, or --tls)",
        ));
    }
    accept_loop(listener, lb, shutdown, true, None).await
}

/// [`serve`] or [`serve_tls`] on one of several serving threads: a
/// connection accepted while this thread serves more than another is
/// handed to that thread's [`serve_inbox`] ([`crate::server::spread`]).
pub async fn serve_seated(
    listener: TcpListener,
    lb: Arc<Lb>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    tls: bool,
    seat: Seat,
) -> std::io::Result<()> {
    if tls && lb.tls.is_none() {
        return serve_tls(listener, lb, shutdown).await;
    }
    accept_loop(listener, lb, shutdown, tls, Some(seat)).await
}

/// Serves the connections other threads hand to this one, until
/// `shutdown`; then waits, within the shutdown grace, for those it started
/// (their own accept loops wait on other threads, whose runtimes these
/// connections do not run on).
pub async fn serve_inbox(
    mut inbox: Inbox,
    lb: Arc<Lb>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let started = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            handed = inbox.next() => match handed {
                Some(handed) => start_handed(&lb, handed, Some(&started)),
                None => break,
            },
            () = &mut shutdown => break,
        }
    }
    // Handed over just before the stop: served under the drain's rules.
    for handed in inbox.close() {
        start_handed(&lb, handed, Some(&started));
    }
    started.close();
    let _ = tokio::time::timeout(lb.config.shutdown_grace, started.wait()).await;
}

fn start_handed(lb: &Arc<Lb>, handed: Handed, tracker: Option<&TaskTracker>) {
    let Handed {
        stream,
        peer,
        permit,
        stop,
        admin,
        tls,
        live,
    } = handed;
    let Ok(stream) = tokio::net::TcpStream::from_std(stream).inspect_err(
        |e| tracing::warn!(error = %e, %peer, "a connection handed over could not be served"),
    ) else {
        return;
    };
    let (held, serving) = ((permit, Some(live)), (stop, tls));
    start_connection(lb.clone(), admin, stream, peer, held, serving, tracker);
}

async fn accept_loop(
    listener: TcpListener,
    lb: Arc<Lb>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    tls: bool,
    seat: Option<Seat>,
) -> std::io::Result<()> {
    let admin = admin::router(lb.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let connections = lb.connections.clone();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // At the connection cap, stop accepting: new clients wait in the
        // kernel's backlog instead of starving the ones being served. The
        // permit is taken after the accept, so that a loop whose listener
        // has nothing waiting holds no permit the others could use (the
        // cap is shared by every loop).
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (lb, admin, stop) = (lb.clone(), admin.clone(), stop_rx.clone());
        let live = match seat.as_ref().map(|seat| (seat, seat.place())) {
            None => None,
            Some((_, Placement::Here(live))) => Some(live),
            Some((seat, Placement::Away(inbox, live))) => {
                let Ok(stream) = stream.into_std() else {
                    continue;
                };
                let handed = Handed {
                    stream,
                    peer,
                    permit,
                    stop,
                    admin,
                    tls,
                    live,
                };
                // That thread has stopped taking connections: serve it here.
                let Err(mpsc::error::SendError(handed)) = inbox.send(handed) else {
                    continue;
                };
                let handed = Handed {
                    live: handed.live.back_to(seat),
                    ..handed
                };
                start_handed(&lb, handed, None);
                continue;
            }
        };
        start_connection(lb, admin, stream, peer, (permit, live), (stop, tls), None);
    }
    // Idle connections close now; busy ones after their current exchange.
    // Told before the listener closes: a client that sees it closed finds
    // the drain begun.
    let _ = stop_tx.send(true);
    drop(listener);
    // Every permit back: this loop's connections, and those of the other
    // loops, which drain alongside it.
    let all = lb.config.connection_permits();
    // Upgraded connections (WebSockets) have left their client connection's
    // task; they are waited for within the same grace.
    lb.tunnels.close();
    let drained = async {
        let _ = connections.acquire_many(all).await;
        lb.tunnels.wait().await;
    };
    if tokio::time::timeout(lb.config.shutdown_grace, drained)
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
    Ok(())
}

/// Spawns an accepted connection's task (on `tracker` when given): the
/// PROXY protocol header first where the listener expects one, then
/// [`serve_client`]. `held` is what the task holds until it ends; `serving`
/// the drain signal and whether the listener is TLS.
fn start_connection(
    lb: Arc<Lb>,
    admin: Router,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    held: Held,
    (stop, tls): (watch::Receiver<bool>, bool),
    tracker: Option<&TaskTracker>,
) {
    if !lb.config.proxy_protocol {
        let task = serve_client(lb, admin, stream, peer, held, stop, tls);
        return spawn_on(tracker, task);
    }
    // The header names the client; it is awaited off the accept loop.
    spawn_on(tracker, async move {
        let _held = held;
        let mut stream = stream;
        let timeout = lb.config.header_read_timeout;
        let peer = match crate::edge::proxy_protocol::read_header(&mut stream, timeout).await {
            Ok(client) => client.unwrap_or(peer),
            Err(()) => {
                let stream = ClientIo::Plain(stream);
                http1::refuse_connection(stream, HeadRefusal::PROXY_HEADER_REQUIRED).await;
                return;
            }
        };
        let admitted = lb.per_ip.admit(peer.ip());
        Box::pin(serve_accepted(lb, admin, stream, peer, admitted, stop, tls)).await;
    });
}

fn spawn_on(tracker: Option<&TaskTracker>, task: impl Future<Output = ()> + Send + 'static) {
    match tracker {
        Some(tracker) => drop(tracker.spawn(task)),
        None => drop(tokio::spawn(task)),
    }
}

/// What a connection's task holds until it ends: its place under
/// `--max-connections`, and its count on its serving thread.
type Held = (tokio::sync::OwnedSemaphorePermit, Option<LiveGuard>);

/// A client connection's task. Until its first bytes arrive it is this
/// small future alone, holding no buffer, timer box or TLS state: an idle
/// connection costs little more than its socket.
async fn serve_client(
    lb: Arc<Lb>,
    admin: Router,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    held: Held,
    mut stop: watch::Receiver<bool>,
    tls: bool,
) {
    let _held = held;
    // Counted from the start: idle connections are what a flood holds.
    let admitted = lb.per_ip.admit(peer.ip());
    if admitted.is_ok() {
        // Peeked, not `readable()`: a new socket's readiness may be set
        // before any byte came.
        let mut probe = [0u8; 1];
        let first_bytes = tokio::select! {
            biased;
            peeked = stream.peek(&mut probe) => peeked.is_ok_and(|n| n > 0),
            () = tokio::time::sleep(lb.config.header_read_timeout) => false,
            _ = stop.wait_for(|s| *s) => false,
        };
        if !first_bytes {
            return;
        }
    }
    Box::pin(serve_accepted(lb, admin, stream, peer, admitted, stop, tls)).await;
}

/// Serves an accepted connection from `peer` (the client): its TLS
/// handshake on a TLS listener, its per-IP admission, then the fast path,
/// then — if a request needs it — hyper.
async fn serve_accepted(
    lb: Arc<Lb>,
    admin: Router,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    admitted: Result<Option<crate::admission::per_ip::PerIpGuard>, crate::admission::per_ip::AtCap>,
    stop: watch::Receiver<bool>,
    tls: bool,
) {
    let client = match lb.tls.as_ref().filter(|_| tls) {
        None => ClientIo::Plain(stream),
        // Within the head's deadline: a handshake that stalls is a slowloris.
        Some(terminator) => {
            let timeout = lb.config.header_read_timeout;
            match tokio::time::timeout(timeout, Box::pin(terminator.accept(stream))).await {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, %peer, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            }
        }
    };
    let Ok(_per_ip) = admitted else {
        lb.rejected_connections.fetch_add(1, Ordering::Relaxed);
        http1::refuse_connection(client, HeadRefusal::TOO_MANY_CONNECTIONS).await;
        return;
    };
    if client.negotiated_h2() {
        let io = http1::Prefixed::new(Vec::new(), client);
        return Box::pin(serve_general(lb, admin, io, peer, stop)).await;
    }
    if let http1::Outcome::Fallback(io) =
        http1::serve_connection(&lb, client, peer, stop.clone()).await
    {
        // Boxed, as the TLS handshake: few connections need them, and every
        // connection's task would otherwise be as large as their state.
        Box::pin(serve_general(lb, admin, io, peer, stop)).await;
    }
}

/// Serves a connection on hyper (HTTP/2, HTTP/1.0, upgrades, the admin API,
/// heads larger than the fast path takes): what the fast path hands over.
async fn serve_general(
    lb: Arc<Lb>,
    admin: Router,
    io: http1::Prefixed,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The fast path holds heads to the same limits before handing over;
    // later requests on the connection meet hyper's (bare 431).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(lb.config.header_read_timeout)
        .max_buf_size(lb.config.max_head_bytes.max(8192))
        .max_headers(lb.config.max_headers);
    // What a client that reads nothing can make the lb hold is its streams
    // times each stream's send buffer (hyper's default buffer is 400 KiB).
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(lb.config.h2_max_streams)
        .max_send_buf_size(H2_SEND_BUFFER);
    let tls = io.is_tls();
    let local = io.local_addr().ok();
    let service = service_fn(move |mut req: Request<Incoming>| {
        if let Some(local) = local {
            req.extensions_mut().insert(crate::proxy::LocalAddr(local));
        }
        proxy::handle(lb.clone(), admin.clone(), req, peer, tls)
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, %peer, "client connection ended with an error");
    }
}

/// Samples the request counters for [`crate::admin::throughput::Throughput`].
async fn sample_throughput(lb: Arc<Lb>) {
    let mut every = tokio::time::interval(crate::admin::throughput::SAMPLE);
    loop {
        every.tick().await;
        let total = lb.backends.snapshot().iter().map(|b| b.requests()).sum();
        lb.throughput.sample(total, std::time::Instant::now());
    }
}

/// Reloads the certificates when their files change on disk (renewed in
/// place); a bad renewal keeps the ones in use and says why.
async fn watch_certificates(lb: Arc<Lb>) {
    let Some(tls) = &lb.tls else { return };
    let mut every = tokio::time::interval(CERTIFICATE_CHECK_INTERVAL);
    loop {
        every.tick().await;
        if tls.due_for_reload() {
            tls.reload_or_keep();
        }
    }
}

async fn housekeep(lb: Arc<Lb>) {
    let mut every = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    loop {
        every.tick().await;
        lb.rate_limits.housekeep();
    }
}

#[cfg(test)]
mod tests {
    /// Every client connection's task is this future: what it holds inline
    /// an idle connection pays for (it once held a 4 KiB array of the
    /// lingering close, and the exchange's state, ~5.5 KB in all; then the
    /// fast path's state, ~2 KB, before the first byte).
    #[tokio::test]
    async fn regression_an_idle_connections_task_stays_small() {
        let lb = crate::Lb::new(crate::LbConfig::new(vec!["http://127.0.0.1:9".into()])).unwrap();
        let admin = crate::admin::router(lb.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (_stop, stop) = tokio::sync::watch::channel(false);
        let permit = std::sync::Arc::new(tokio::sync::Semaphore::new(1))
            .acquire_owned()
            .await
            .unwrap();
        let task =
            crate::server::serve_client(lb, admin, stream, peer, (permit, None), stop, false);
        let size = std::mem::size_of_val(&task);
        assert!(
            size <= 1024,
            "a connection's task holds {size} bytes inline"
        );
    }
}
