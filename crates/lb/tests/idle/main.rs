//! What an idle client connection costs the lb's heap, counted by this test
//! binary's own allocator.

use std::time::Duration;

use tokio::net::TcpListener;
use weir_lb::{Lb, LbConfig};
use weir_testkit::heap::{per_idle_connection, Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// A new socket's readiness is set before any byte has come: waiting with
/// `readable()` then reading went straight on to allocate the fast path's
/// state and a 4 KiB read buffer for every idle connection (7.7 KB each in
/// this test). Waiting now peeks, and the connection's task stays small
/// until a byte arrives. (A debug build's futures are larger than a
/// release build's; docs/BENCHMARKS.md has the release figure.)
#[tokio::test(flavor = "current_thread")]
async fn regression_an_idle_connection_holds_no_buffer() {
    let (addr, lb) = IdleLb::start(None).await;
    // The first connections warm up what is allocated once.
    let (_, warm) = per_idle_connection(&Region::new(GLOBAL), addr, 50).await;
    let (per_connection, clients) = per_idle_connection(&Region::new(GLOBAL), addr, 2000).await;
    eprintln!("{per_connection} bytes per idle connection");
    assert!(
        per_connection < 1536,
        "{per_connection} bytes per idle connection"
    );
    drop((warm, clients));
    lb.stop().await;
}

/// An idle HTTPS connection, its handshake done and no request yet, went
/// straight on to the fast path's read with its 4 KiB buffer (16.9 KB each
/// in this test): a TLS session was taken to be readable at once, in case
/// it held decrypted bytes. It then read into the session's own record
/// buffer and waited holding nothing more but that buffer, which rustls's
/// buffered connection keeps (4 KiB) for the session's life. The lb's own
/// TLS stream on rustls's unbuffered API now gives every buffer back while
/// it waits (10.0 KB: keys, state and the task; the 4 KiB back would put
/// it past the bound).
/// The clients are a Python process of their own (its `ssl` module), so
/// that only the lb's side is counted here.
#[tokio::test(flavor = "current_thread")]
async fn regression_an_idle_tls_connection_holds_no_read_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let files = weir_lb::edge::tls::CertFiles {
        cert: dir.path().join("lb.crt"),
        key: dir.path().join("lb.key"),
    };
    std::fs::write(&files.cert, generated.cert.pem()).unwrap();
    std::fs::write(&files.key, generated.signing_key.serialize_pem()).unwrap();
    let (addr, lb) = IdleLb::start(Some(weir_lb::edge::tls::TlsSettings {
        default: Some(files),
        by_name: Vec::new(),
        min_version: weir_lb::edge::tls::TlsVersion::V1_2,
    }))
    .await;
    let warm = TlsClients::open(addr, 50).await;
    let region = Region::new(GLOBAL);
    weir_testkit::heap::settle(&region).await;
    let before = weir_testkit::heap::live(&region);
    const N: usize = 1000;
    let clients = TlsClients::open(addr, N).await;
    weir_testkit::heap::settle(&region).await;
    let per_connection = (weir_testkit::heap::live(&region) - before) / N as isize;
    eprintln!("{per_connection} bytes per idle TLS connection");
    assert!(
        per_connection < 11_500,
        "{per_connection} bytes per idle TLS connection"
    );
    drop((warm, clients));
    lb.stop().await;
}

/// An lb with no reachable backend, serving on this test's runtime (HTTPS
/// with `tls`), for as many connections as the tests open.
struct IdleLb {
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl IdleLb {
    async fn start(tls: Option<weir_lb::edge::tls::TlsSettings>) -> (std::net::SocketAddr, IdleLb) {
        let mut config = LbConfig::new(vec!["http://127.0.0.1:9".into()]);
        config.health_interval = Duration::from_secs(3600);
        config.max_connections = 10_000;
        let https = tls.is_some();
        config.tls = tls;
        let lb = Lb::new(config).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let served = if https {
            tokio::spawn(weir_lb::serve_tls(listener, lb, stopped))
        } else {
            tokio::spawn(weir_lb::serve(listener, lb, stopped))
        };
        (addr, IdleLb { stop, served })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.served.await.unwrap().unwrap();
    }
}

/// `n` TLS connections held open by a Python process, each handshaken.
struct TlsClients(std::process::Child);

impl TlsClients {
    async fn open(addr: std::net::SocketAddr, n: usize) -> TlsClients {
        use std::io::BufRead;
        let script = format!(
            "import socket, ssl, sys\n\
             ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)\n\
             ctx.check_hostname = False\n\
             ctx.verify_mode = ssl.CERT_NONE\n\
             held = []\n\
             for _ in range({n}):\n\
             \x20   s = socket.create_connection(('{ip}', {port}))\n\
             \x20   held.append(ctx.wrap_socket(s, server_hostname='localhost'))\n\
             print('ready', flush=True)\n\
             sys.stdin.read()\n",
            ip = addr.ip(),
            port = addr.port()
        );
        let mut child = std::process::Command::new("python3")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let stdout = child.stdout.take().unwrap();
        // The handshakes need this runtime's server: read the line elsewhere.
        let ready = std::thread::spawn(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .unwrap();
            line
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !ready.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "no handshakes in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(ready.join().unwrap().trim(), "ready");
        TlsClients(child)
    }
}

impl Drop for TlsClients {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
