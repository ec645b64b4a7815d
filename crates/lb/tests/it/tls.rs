//! TLS termination: HTTPS on the fast path and HTTP/2 by ALPN, certificates
//! by SNI, the minimum version, renewal in place, and bad files named.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use weir_lb::edge::tls::{CertFiles, TlsSettings, TlsVersion};
use weir_lb::{Lb, LbConfig};

use crate::support::{poll, TestBackend};

/// A self-signed ECDSA P-256 certificate for `names`, written as PEM files.
struct TestCert {
    der: CertificateDer<'static>,
    files: CertFiles,
}

impl TestCert {
    fn write(dir: &Path, stem: &str, names: &[&str]) -> TestCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let generated = rcgen::generate_simple_self_signed(names).unwrap();
        let files = CertFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&files.cert, generated.cert.pem()).unwrap();
        std::fs::write(&files.key, generated.signing_key.serialize_pem()).unwrap();
        TestCert {
            der: generated.cert.der().clone(),
            files,
        }
    }

    /// Renews in place: new key and certificate, written over these files.
    fn renew(&self, names: &[&str]) -> TestCert {
        let dir = self.files.cert.parent().unwrap();
        let fresh = TestCert::write(dir, "renewed", names);
        std::fs::rename(&fresh.files.cert, &self.files.cert).unwrap();
        std::fs::rename(&fresh.files.key, &self.files.key).unwrap();
        TestCert {
            der: fresh.der,
            files: self.files.clone(),
        }
    }
}

/// An lb serving HTTPS only.
struct TlsLb {
    addr: std::net::SocketAddr,
    lb: Arc<Lb>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TlsLb {
    async fn start(backends: Vec<String>, tls: TlsSettings) -> TlsLb {
        Self::start_with(backends, tls, |_| {}).await
    }

    async fn start_with(
        backends: Vec<String>,
        tls: TlsSettings,
        adjust: impl FnOnce(&mut LbConfig),
    ) -> TlsLb {
        let mut config = LbConfig::new(backends);
        config.admin_token = crate::support::TOKEN.into();
        config.health_interval = Duration::from_millis(100);
        config.tls = Some(tls);
        adjust(&mut config);
        let lb = Lb::new(config).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel();
        let background = weir_lb::spawn_background(&lb);
        let served = lb.clone();
        let task = tokio::spawn(async move {
            let result = weir_lb::serve_tls(listener, served, async move {
                let _ = rx.await;
            })
            .await;
            background.abort();
            result
        });
        TlsLb {
            addr,
            lb,
            stop,
            task,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// A TLS client trusting `roots`, offering `alpn`, limited to `versions`.
fn client_config(
    roots: &[&CertificateDer<'static>],
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

async fn handshake(
    lb: &TlsLb,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(lb.addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The certificate the lb presented for `name`.
async fn presented(lb: &TlsLb, roots: &[&CertificateDer<'static>], name: &str) -> Vec<u8> {
    let config = client_config(roots, &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let tls = handshake(lb, config, name).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn http1(tls: TlsStream<TcpStream>) -> Sender {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// `GET /echo` over HTTP/2 on an established TLS connection.
async fn h2_get_echo(tls: TlsStream<TcpStream>) -> http::Response<hyper::body::Incoming> {
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/echo")
        .body(Full::new(Bytes::new()))
        .unwrap();
    sender.send_request(req).await.unwrap()
}

fn get(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn json_of(resp: http::Response<hyper::body::Incoming>) -> Value {
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

fn single(cert: &TestCert) -> TlsSettings {
    TlsSettings {
        default: Some(cert.files.clone()),
        ..TlsSettings::default()
    }
}

#[tokio::test]
async fn https_requests_reach_the_backend_over_http1_keep_alive_and_http2_by_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::write(dir.path(), "site", &["localhost"]);
    let backend = TestBackend::start("a", Duration::ZERO).await;
    let lb = TlsLb::start(vec![backend.url()], single(&cert)).await;

    // HTTP/1.1, several requests on one connection (the fast path).
    let config = client_config(&[&cert.der], &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let tls = handshake(&lb, config, "localhost").await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut sender = http1(tls).await;
    for _ in 0..3 {
        let resp = sender.send_request(get("/echo")).await.unwrap();
        assert_eq!(resp.status(), 200);
        let echoed = json_of(resp).await;
        assert_eq!(echoed["headers"]["x-forwarded-proto"], "https");
        assert_eq!(echoed["backend"], "a");
    }
    let body = Bytes::from(vec![b'x'; 200_000]);
    let post = http::Request::post("/echo")
        .header("host", "localhost")
        .body(Full::new(body.clone()))
        .unwrap();
    let resp = sender.send_request(post).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), body);

    // HTTP/2, chosen by ALPN.
    let config = client_config(
        &[&cert.der],
        &[b"h2", b"http/1.1"],
        rustls::DEFAULT_VERSIONS,
    );
    let tls = handshake(&lb, config, "localhost").await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let resp = h2_get_echo(tls).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(json_of(resp).await["headers"]["x-forwarded-proto"], "https");

    // A second connection resumes the session (a ticket from the first).
    let config = client_config(&[&cert.der], &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let first = handshake(&lb, config.clone(), "localhost").await.unwrap();
    let mut first = http1(first).await;
    assert_eq!(
        first.send_request(get("/work")).await.unwrap().status(),
        200
    );
    let again = handshake(&lb, config, "localhost").await.unwrap();
    assert_eq!(
        again.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    lb.stop().await;
    backend.kill().await;
}

/// The lb closed a TLS connection it ended (`Connection: close` here) with
/// a bare TCP close: rustls and other strict clients report an unexpected
/// end of file, and an answer delimited by the close reads as truncated.
#[tokio::test]
async fn regression_a_tls_connection_the_lb_closes_ends_with_close_notify() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::write(dir.path(), "site", &["localhost"]);
    let backend = TestBackend::start("a", Duration::ZERO).await;
    let lb = TlsLb::start(vec![backend.url()], single(&cert)).await;
    let config = client_config(&[&cert.der], &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let mut tls = handshake(&lb, config, "localhost").await.unwrap();
    tls.write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(read.is_ok(), "{read:?} after {answer}");
    lb.stop().await;
}

#[tokio::test]
async fn sni_picks_the_certificate_named_and_the_default_for_other_names() {
    let dir = tempfile::tempdir().unwrap();
    let default = TestCert::write(dir.path(), "default", &["localhost"]);
    let a = TestCert::write(dir.path(), "a", &["a.test"]);
    let wild = TestCert::write(dir.path(), "wild", &["*.w.test"]);
    let backend = TestBackend::start("a", Duration::ZERO).await;
    let settings = TlsSettings {
        default: Some(default.files.clone()),
        by_name: vec![
            ("A.test".into(), a.files.clone()),
            ("*.w.test".into(), wild.files.clone()),
        ],
        min_version: TlsVersion::V1_2,
    };
    let lb = TlsLb::start(vec![backend.url()], settings).await;
    let roots = [&default.der, &a.der, &wild.der];
    assert_eq!(presented(&lb, &roots, "a.test").await, a.der.to_vec());
    assert_eq!(presented(&lb, &roots, "x.w.test").await, wild.der.to_vec());
    assert_eq!(
        presented(&lb, &roots, "localhost").await,
        default.der.to_vec()
    );
    // A name no certificate carries gets the default one (and the client
    // refuses it, as it should).
    let config = client_config(&roots, &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    assert!(handshake(&lb, config, "other.test").await.is_err());
    lb.stop().await;
    backend.kill().await;
}

#[tokio::test]
async fn tls_min_version_1_3_refuses_a_tls_1_2_client_and_1_2_is_offered_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::write(dir.path(), "site", &["localhost"]);
    let backend = TestBackend::start("a", Duration::ZERO).await;
    let tls12 = &[&rustls::version::TLS12][..];

    let lb = TlsLb::start(vec![backend.url()], single(&cert)).await;
    let config = client_config(&[&cert.der], &[b"http/1.1"], tls12);
    let tls = handshake(&lb, config, "localhost").await.unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    lb.stop().await;

    let settings = TlsSettings {
        min_version: TlsVersion::V1_3,
        ..single(&cert)
    };
    let lb = TlsLb::start(vec![backend.url()], settings).await;
    let config = client_config(&[&cert.der], &[b"http/1.1"], tls12);
    assert!(handshake(&lb, config, "localhost").await.is_err());
    let config = client_config(&[&cert.der], &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let tls = handshake(&lb, config, "localhost").await.unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    lb.stop().await;
    backend.kill().await;
}

#[tokio::test]
async fn a_certificate_renewed_on_disk_is_served_without_a_restart_and_a_bad_renewal_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestCert::write(dir.path(), "site", &["localhost"]);
    let backend = TestBackend::start("a", Duration::ZERO).await;
    let lb = TlsLb::start(vec![backend.url()], single(&old)).await;

    let config = client_config(&[&old.der], &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let mut before = http1(handshake(&lb, config, "localhost").await.unwrap()).await;
    assert_eq!(
        before.send_request(get("/work")).await.unwrap().status(),
        200
    );

    // Renewed in place, as cert-manager does: new connections get it.
    let new = old.renew(&["localhost"]);
    let roots = [&old.der, &new.der];
    poll(Duration::from_secs(10), || async {
        (presented(&lb, &roots, "localhost").await == new.der.to_vec()).then_some(())
    })
    .await;
    // The connection opened before the renewal is still served.
    assert_eq!(
        before.send_request(get("/work")).await.unwrap().status(),
        200
    );

    // A bad renewal: reloading says why, and the good certificate stays.
    std::fs::write(&new.files.cert, "not a certificate").unwrap();
    let err = lb
        .lb
        .tls
        .as_ref()
        .unwrap()
        .reload()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("site.crt") && err.contains("--tls-cert"),
        "{err}"
    );
    assert_eq!(presented(&lb, &roots, "localhost").await, new.der.to_vec());
    lb.stop().await;
    backend.kill().await;
}

fn start_error(settings: TlsSettings) -> String {
    let mut config = LbConfig::new(vec!["http://127.0.0.1:9".into()]);
    config.tls = Some(settings);
    match Lb::new(config) {
        Ok(_) => panic!("the lb started with bad TLS files"),
        Err(e) => e,
    }
}

#[test]
fn bad_or_mismatched_certificate_files_stop_the_lb_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestCert::write(dir.path(), "a", &["localhost"]);
    let b = TestCert::write(dir.path(), "b", &["localhost"]);

    let mismatched = TlsSettings {
        default: Some(CertFiles {
            cert: a.files.cert.clone(),
            key: b.files.key.clone(),
        }),
        ..TlsSettings::default()
    };
    let err = start_error(mismatched);
    assert!(
        err.contains("does not match") && err.contains("--tls-key") && err.contains("b.key"),
        "{err}"
    );

    let missing: PathBuf = dir.path().join("absent.crt");
    let err = start_error(TlsSettings {
        default: Some(CertFiles {
            cert: missing,
            key: a.files.key.clone(),
        }),
        ..TlsSettings::default()
    });
    assert!(
        err.contains("--tls-cert") && err.contains("absent.crt"),
        "{err}"
    );

    std::fs::write(dir.path().join("junk.key"), "-----BEGIN NOTHING-----").unwrap();
    let err = start_error(TlsSettings {
        by_name: vec![(
            "a.test".into(),
            CertFiles {
                cert: a.files.cert.clone(),
                key: dir.path().join("junk.key"),
            },
        )],
        ..TlsSettings::default()
    });
    assert!(
        err.contains("--tls a.test") && err.contains("junk.key"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// `--hsts` and `--add-header` as the CLI builds them.
fn edge_headers() -> weir_lb::edge::EdgeHeaders {
    weir_lb::edge::EdgeHeaders::new(
        vec![
            weir_lb::edge::parse_header("X-Content-Type-Options: nosniff").unwrap(),
            // The backend sends its own: it must win.
            weir_lb::edge::parse_header("Content-Type: text/plain").unwrap(),
        ],
        Some(http::HeaderValue::from_static("max-age=63072000")),
    )
}

#[tokio::test]
async fn answers_over_tls_carry_hsts_and_the_added_headers_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::write(dir.path(), "site", &["localhost"]);
    let backend = TestBackend::start("a", Duration::ZERO).await;
    let lb = TlsLb::start_with(vec![backend.url()], single(&cert), |c| {
        c.edge_headers = edge_headers();
    })
    .await;
    let check = |headers: &http::HeaderMap| {
        assert_eq!(headers["strict-transport-security"], "max-age=63072000");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers.get_all("content-type").iter().count(), 1);
    };
    // HTTP/1.1: the fast path.
    let config = client_config(&[&cert.der], &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let mut sender = http1(handshake(&lb, config, "localhost").await.unwrap()).await;
    let resp = sender.send_request(get("/echo")).await.unwrap();
    assert_eq!(resp.status(), 200);
    check(resp.headers());
    // HTTP/2: the general path.
    let config = client_config(&[&cert.der], &[b"h2"], rustls::DEFAULT_VERSIONS);
    let tls = handshake(&lb, config, "localhost").await.unwrap();
    let resp = h2_get_echo(tls).await;
    assert_eq!(resp.status(), 200);
    check(resp.headers());
    lb.stop().await;
    backend.kill().await;
}

#[tokio::test]
async fn plain_http_is_redirected_to_https_except_acme_challenges() {
    let backend = TestBackend::start("a", Duration::ZERO).await;
    let lb = crate::support::TestLb::start_with(vec![backend.url()], |c| {
        c.redirect_http = Some(weir_lb::edge::HttpsRedirect { port: 8443 });
        c.edge_headers = edge_headers();
    })
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str, host: &str| {
        client
            .get(format!("{}{path}", lb.base))
            .header("host", host)
            .send()
    };
    for _ in 0..2 {
        let resp = get("/tasks/1?full=1", "example.com:8080").await.unwrap();
        assert_eq!(resp.status(), 308);
        assert_eq!(
            resp.headers()["location"],
            "https://example.com:8443/tasks/1?full=1"
        );
        assert!(resp.headers().get("strict-transport-security").is_none());
    }
    // A Host no redirect may be built from: 400, not a location elsewhere.
    let resp = get("/", "evil.com/phish").await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_host");
    // ACME HTTP-01 challenges reach the backend over plain HTTP, with the
    // added headers but never HSTS.
    let resp = get("/.well-known/acme-challenge/token", "example.com")
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert!(resp.headers().get("strict-transport-security").is_none());
    let echoed: Value = resp.json().await.unwrap();
    assert_eq!(echoed["backend"], "a");
    // The admin API stays on the plain listener.
    let resp = get("/lb/health/live", "example.com").await.unwrap();
    assert_eq!(resp.status(), 200);
    lb.stop().await;
    backend.kill().await;
}

/// An RSA certificate made by `openssl` (rcgen on ring cannot make RSA
/// keys), its key as PKCS#8 (`BEGIN PRIVATE KEY`) or as the traditional
/// PKCS#1 (`BEGIN RSA PRIVATE KEY`).
fn openssl_rsa_cert(dir: &Path, pkcs1: bool) -> TestCert {
    let files = CertFiles {
        cert: dir.join("rsa.crt"),
        key: dir.join("rsa.key"),
    };
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            // A leaf, not the CA `req -x509` makes by default.
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&files.key)
        .arg("-out")
        .arg(&files.cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    if pkcs1 {
        let converted = std::process::Command::new("openssl")
            .args(["rsa", "-traditional", "-in"])
            .arg(&files.key)
            .arg("-out")
            .arg(&files.key)
            .output()
            .unwrap();
        assert!(converted.status.success());
        let pem = std::fs::read_to_string(&files.key).unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{pem}");
    }
    let pem = std::fs::read(&files.cert).unwrap();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem).unwrap();
    TestCert { der, files }
}

#[tokio::test]
async fn rsa_certificates_are_served_with_pkcs8_and_pkcs1_keys() {
    let backend = TestBackend::start("a", Duration::ZERO).await;
    for pkcs1 in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let cert = openssl_rsa_cert(dir.path(), pkcs1);
        let lb = TlsLb::start(vec![backend.url()], single(&cert)).await;
        assert_eq!(
            presented(&lb, &[&cert.der], "localhost").await,
            cert.der.to_vec()
        );
        let config = client_config(&[&cert.der], &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
        let tls = handshake(&lb, config, "localhost").await.unwrap();
        let mut sender = http1(tls).await;
        let resp = sender.send_request(get("/echo")).await.unwrap();
        assert_eq!(resp.status(), 200, "pkcs1: {pkcs1}");
        lb.stop().await;
    }
}
