//! Accepting clients: what `axum::serve` does, except that a connection is
//! a small task holding no buffer until its first byte arrives.
//!
//! hyper allocates a connection's read and write state as soon as it is
//! given one; an API node facing many clients directly held 18 KB per
//! connection that had sent nothing. Peeking one byte first keeps such a
//! connection at its socket and a small future, as the lb's fast path does.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// How long a new connection may stay silent before it is closed (hyper's
/// own default for reading a request head).
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` until `shutdown` completes, then lets open requests finish:
/// idle connections close at once, busy ones after their current exchange.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop) = watch::channel(false);
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(stream, app.clone(), stop.clone()));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    connections.close();
    connections.wait().await;
    Ok(())
}

async fn serve_connection(stream: TcpStream, app: Router, mut stop: watch::Receiver<bool>) {
    // Peeked, not `readable()`: a new socket's readiness may be set before
    // any byte came.
    let mut probe = [0u8; 1];
    let spoke = tokio::select! {
        biased;
        peeked = stream.peek(&mut probe) => peeked.is_ok_and(|n| n > 0),
        () = tokio::time::sleep(FIRST_BYTE_TIMEOUT) => false,
        _ = stop.wait_for(|s| *s) => false,
    };
    if spoke {
        Box::pin(serve_hyper(stream, app, stop)).await;
    }
}

async fn serve_hyper(stream: TcpStream, app: Router, mut stop: watch::Receiver<bool>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    // Each request knows the address it came from (the audit log's client).
    let peer = stream.peer_addr().ok().map(crate::audit::PeerAddr);
    let app = tower::ServiceExt::map_request(app, move |mut req: axum::http::Request<_>| {
        if let Some(peer) = peer {
            req.extensions_mut().insert(peer);
        }
        req
    });
    let service = TowerToHyperService::new(app);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
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
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}
