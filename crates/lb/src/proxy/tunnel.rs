//! Upgraded connections (WebSockets, and any other `Upgrade` a backend
//! accepts with `101`): once both sides have switched protocols, the lb
//! relays bytes both ways until either side closes, or until neither has
//! sent anything for `--upgrade-idle-timeout` — then both are closed, so a
//! client whose backend died sees its connection end, not a hang.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::backends::InFlightGuard;
use crate::state::Lb;

/// Relays between the client's and the backend's upgraded connections, on a
/// task the lb's drain waits for. The in-flight guard is held throughout: an
/// open WebSocket is load on its backend.
pub(crate) fn spawn(lb: &Lb, client: OnUpgrade, backend: OnUpgrade, guard: InFlightGuard) {
    let idle = lb.config.upgrade_idle_timeout;
    lb.tunnels.spawn(async move {
        let _in_flight = guard;
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        match relay(client, backend, idle).await {
            Ok(()) => {}
            Err(e) => tracing::debug!(error = %e, "upgraded connection ended"),
        }
    });
}

/// Copies both ways until either side ends (its last bytes passed on), one
/// fails, or nothing moved for `idle`. Ending when either side does, as
/// nginx does: a peer that closed has nothing more to say, and a client
/// that never closes its half must not hold the backend's slot.
async fn relay(client: Upgraded, backend: Upgraded, idle: Duration) -> io::Result<()> {
    let last = Arc::new(AtomicU64::new(0));
    let started = tokio::time::Instant::now();
    let client = Active::new(TokioIo::new(client), last.clone(), started);
    let backend = Active::new(TokioIo::new(backend), last.clone(), started);
    let (mut from_client, mut to_client) = tokio::io::split(client);
    let (mut from_backend, mut to_backend) = tokio::io::split(backend);
    let up = async {
        tokio::io::copy(&mut from_client, &mut to_backend).await?;
        to_backend.shutdown().await
    };
    let down = async {
        tokio::io::copy(&mut from_backend, &mut to_client).await?;
        to_client.shutdown().await
    };
    let watchdog = async {
        loop {
            let seen = started + Duration::from_nanos(last.load(Ordering::Relaxed));
            tokio::time::sleep_until(seen + idle).await;
            let latest = started + Duration::from_nanos(last.load(Ordering::Relaxed));
            if latest == seen {
                return;
            }
        }
    };
    tokio::select! {
        ended = up => ended,
        ended = down => ended,
        () = watchdog => Err(io::Error::new(io::ErrorKind::TimedOut, "idle past --upgrade-idle-timeout")),
    }
}

/// A stream that stamps the time of every read that brought bytes.
struct Active<S> {
    inner: S,
    last: Arc<AtomicU64>,
    started: tokio::time::Instant,
}

impl<S> Active<S> {
    fn new(inner: S, last: Arc<AtomicU64>, started: tokio::time::Instant) -> Self {
        Active {
            inner,
            last,
            started,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Active<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ns = self.started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
            self.last.store(ns, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Active<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
