//! A TCP proxy that injects network faults, for tests that put it between
//! weir and PostgreSQL or Redis.
//!
//! Every connection is forwarded chunk by chunk; before each chunk goes on,
//! the current [`Fault`] is applied in that direction: added latency, a
//! bandwidth cap, or a black hole that holds every byte (in both
//! directions, new connections included) until the fault is lifted — what a
//! partition looks like to TCP, which retransmits until the path heals.
//! [`FaultProxy::reset_all`] ends every open connection with a RST, as a
//! crashed middlebox or a failover would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to the bytes passing through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Bytes pass as they come.
    None,
    /// Each chunk waits this long before it goes on.
    Latency(Duration),
    /// At most this many bytes per second in each direction of a connection.
    Bandwidth(u64),
    /// Nothing passes; bytes are held until the fault changes.
    BlackHole,
}

struct Shared {
    fault: watch::Sender<Fault>,
    /// Bumped by [`FaultProxy::reset_all`]; every connection watches it.
    resets: watch::Sender<u64>,
    connections: AtomicU64,
    bytes: AtomicU64,
}

/// A running proxy; it stops accepting when dropped (open connections end
/// with their peers).
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("a bound address");
        let shared = Arc::new(Shared {
            fault: watch::channel(Fault::None).0,
            resets: watch::channel(0).0,
            connections: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, target, shared.clone()));
        FaultProxy {
            addr,
            target,
            shared,
            accept,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` (a `postgres://` or `redis://` URL naming the target) with its
    /// host and port replaced by this proxy's.
    pub fn url_through(&self, url: &str) -> String {
        let original = self.target.to_string();
        assert!(
            url.contains(&original),
            "{url} does not name {original}, the proxy's target"
        );
        url.replacen(&original, &self.addr.to_string(), 1)
    }

    /// Applies `fault` from now on, to open connections too.
    pub fn set(&self, fault: Fault) {
        self.shared.fault.send_replace(fault);
    }

    /// Ends every open connection with a RST (both sides); new ones are
    /// accepted as before.
    pub fn reset_all(&self) {
        self.shared.resets.send_modify(|n| *n += 1);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Bytes forwarded so far, both directions.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.reset_all();
    }
}

/// The `host:port` a URL such as `postgres://user@127.0.0.1:5432/db` names.
pub fn url_target(url: &str) -> SocketAddr {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    host_port
        .parse()
        .unwrap_or_else(|e| panic!("{url}: no IP:port to proxy ({e})"))
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        shared.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(client, target, shared.clone()));
    }
}

async fn serve(mut client: TcpStream, target: SocketAddr, shared: Arc<Shared>) {
    let mut resets = shared.resets.subscribe();
    resets.mark_unchanged();
    // A black hole answers no connection attempt either.
    let mut fault = shared.fault.subscribe();
    let passable = fault.wait_for(|f| *f != Fault::BlackHole);
    tokio::select! {
        _ = passable => {}
        _ = resets.changed() => return abort(&client),
    }
    let Ok(mut server) = TcpStream::connect(target).await else {
        return abort(&client);
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    // Borrowed halves: owned write halves would send a FIN on drop, ahead
    // of the RST a reset means to deliver.
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let both = async {
        tokio::join!(
            pump(&mut client_read, &mut server_write, &shared),
            pump(&mut server_read, &mut client_write, &shared),
        )
    };
    let reset = tokio::select! {
        _ = both => false,
        _ = resets.changed() => true,
    };
    if reset {
        abort(&client);
        abort(&server);
    }
}

/// Makes the coming close a RST instead of a FIN.
fn abort(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Copies `from` to `to`, a chunk at a time, each chunk held back as the
/// current fault says; shuts `to` down at end of stream.
async fn pump(from: &mut ReadHalf<'_>, to: &mut WriteHalf<'_>, shared: &Shared) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut fault = shared.fault.subscribe();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let current = *fault.borrow_and_update();
        match current {
            Fault::None => {}
            Fault::Latency(d) => tokio::time::sleep(d).await,
            Fault::Bandwidth(per_second) => {
                let secs = n as f64 / per_second.max(1) as f64;
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
            Fault::BlackHole => {
                if fault.wait_for(|f| *f != Fault::BlackHole).await.is_err() {
                    break;
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(bytes).await?;
        let mut back = vec![0u8; bytes.len()];
        stream.read_exact(&mut back).await?;
        Ok(back)
    }

    #[tokio::test]
    async fn forwards_then_delays_then_holds_then_resets() {
        let proxy = FaultProxy::start(echo_server().await).await;
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"hello").await.unwrap(), b"hello");

        proxy.set(Fault::Latency(Duration::from_millis(100)));
        let started = Instant::now();
        round_trip(&mut s, b"slow").await.unwrap();
        // Once on the way there, once on the way back.
        assert!(started.elapsed() >= Duration::from_millis(200));

        proxy.set(Fault::BlackHole);
        s.write_all(b"held").await.unwrap();
        let mut one = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut one)).await;
        assert!(read.is_err(), "a black hole let bytes through");
        proxy.set(Fault::None);
        s.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"held");

        proxy.reset_all();
        let mut rest = [0u8; 1];
        let after = s.read(&mut rest).await;
        assert!(
            matches!(&after, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "{after:?}"
        );
        // New connections pass again.
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut fresh, b"again").await.unwrap(), b"again");
        assert_eq!(proxy.connections(), 2);
    }

    #[tokio::test]
    async fn bandwidth_cap_paces_bytes() {
        let proxy = FaultProxy::start(echo_server().await).await;
        proxy.set(Fault::Bandwidth(64 * 1024));
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        let started = Instant::now();
        round_trip(&mut s, &[7u8; 32 * 1024]).await.unwrap();
        // 32 KiB at 64 KiB/s, in chunks: at least half a second.
        assert!(started.elapsed() >= Duration::from_millis(450));
    }

    #[test]
    fn url_target_reads_the_address() {
        let addr = url_target("postgres://postgres@127.0.0.1:5433/weir_test_x?sslmode=disable");
        assert_eq!(addr, "127.0.0.1:5433".parse().unwrap());
        assert_eq!(
            url_target("redis://127.0.0.1:6380"),
            "127.0.0.1:6380".parse().unwrap()
        );
    }
}
