//! `--proxy-protocol`: the client a balancer in front names (v1 or v2) is
//! the client everywhere — `X-Forwarded-For` here — and a connection
//! without the header is refused.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::v2::{Builder, Command, Protocol, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestBackend, TestLb};

/// Sends `prefix` then one `GET /echo` on a fresh connection; the answer.
async fn exchange(lb: &TestLb, prefix: &[u8]) -> String {
    exchange_at(lb, prefix, "/echo").await
}

/// `/lb/stats` from an lb that takes only connections with a PROXY header.
async fn stats_through_header(lb: &TestLb) -> serde_json::Value {
    let local = Builder::with_addresses(
        Version::Two | Command::Local,
        Protocol::Unspecified,
        ppp::v2::Addresses::Unspecified,
    )
    .build()
    .unwrap();
    let answer = exchange_at(lb, &local, "/lb/stats").await;
    let body = &answer[answer.find("\r\n\r\n").expect("a whole answer") + 4..];
    serde_json::from_str(body).unwrap_or_default()
}

/// Sends `prefix` then one `GET path` on a fresh connection; the answer.
async fn exchange_at(lb: &TestLb, prefix: &[u8], path: &str) -> String {
    let mut conn = TcpStream::connect(lb.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(
        format!("GET {path} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    conn.write_all(&bytes).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// The `X-Forwarded-For` the backend saw, from its echo.
fn forwarded_for(answer: &str) -> String {
    let body = &answer[answer.find("\r\n\r\n").expect("a whole answer") + 4..];
    let echo: serde_json::Value = serde_json::from_str(body).expect("the echo's JSON");
    echo["headers"]["x-forwarded-for"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_a_proxy_header_names_is_the_one_forwarded() {
    let backend = TestBackend::start("b1", Duration::ZERO).await;
    let lb = TestLb::start_with(vec![backend.url()], |c| c.proxy_protocol = true).await;

    let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n";
    let answer = exchange(&lb, v1).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(forwarded_for(&answer), "203.0.113.7");

    let from: SocketAddr = "198.51.100.9:40000".parse().unwrap();
    let to: SocketAddr = "10.0.0.1:443".parse().unwrap();
    let v2 = Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (from, to))
        .build()
        .unwrap();
    let answer = exchange(&lb, &v2).await;
    assert_eq!(forwarded_for(&answer), "198.51.100.9", "{answer}");
    let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n";
    assert_eq!(forwarded_for(&exchange(&lb, v6).await), "2001:db8::1");

    // The balancer's own health check (LOCAL) is served as itself.
    let local =
        Builder::with_addresses(Version::Two | Command::Local, Protocol::Stream, (from, to))
            .build()
            .unwrap();
    assert_eq!(forwarded_for(&exchange(&lb, &local).await), "127.0.0.1");

    // No header, or a forged-looking one: refused, with the JSON error.
    for bad in [&b""[..], b"PROXY TCP4 nonsense\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 and then some more bytes than a v1 header may hold, which is one hundred and seven\r\n"] {
        let answer = exchange(&lb, bad).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("proxy_header_required"), "{answer}");
    }
    lb.stop().await;
}

/// `--send-proxy-protocol`: a front lb names the client to a back lb that
/// requires the header (`--proxy-protocol`), on requests and on its health
/// checks (as `LOCAL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_sent_to_backends_names_the_client() {
    let backend = TestBackend::start("b1", Duration::ZERO).await;
    let back = TestLb::start_with(vec![backend.url()], |c| c.proxy_protocol = true).await;
    let front = TestLb::start_with(vec![back.base.clone()], |c| {
        c.proxy_protocol = true;
        c.send_proxy_protocol = true;
    })
    .await;
    let from: SocketAddr = "198.51.100.9:40000".parse().unwrap();
    let to: SocketAddr = "10.0.0.1:443".parse().unwrap();
    let v2 = Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (from, to))
        .build()
        .unwrap();
    for _ in 0..3 {
        let answer = exchange(&front, &v2).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // The front lb's X-Forwarded-For entry, then the back lb's: the
        // client the PROXY header named, not the front lb's own address.
        assert_eq!(forwarded_for(&answer), "198.51.100.9, 198.51.100.9");
    }
    // The front's health checks reach the back lb's backend through it.
    crate::support::poll(Duration::from_secs(10), || async {
        let requests = stats_through_header(&back).await["backends"][0]["requests"].as_u64()?;
        (requests >= 6).then_some(())
    })
    .await;
    assert_eq!(
        stats_through_header(&front).await["backends"][0]["healthy"],
        true
    );
    front.stop().await;
    back.stop().await;
    backend.kill().await;
}

/// Safe by default: on a listener that is not loopback, with no
/// `--admin-allow`, the admin API and dashboard answer loopback clients
/// only; another client's `/lb/*` and `/dashboard` go to the backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_listener_keeps_the_admin_surface_for_loopback_clients() {
    let backend = TestBackend::start("b1", Duration::ZERO).await;
    let lb = TestLb::start_with(vec![backend.url()], |c| {
        c.proxy_protocol = true;
        c.guard_admin(&["0.0.0.0:80".parse().unwrap()]);
    })
    .await;
    let remote = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 80\r\n";
    let local = b"PROXY TCP4 127.0.0.1 127.0.0.1 56324 80\r\n";
    for path in ["/lb/stats", "/dashboard", "/lb/strategy"] {
        // The backend has no such path: its 404, not the lb's page.
        let answer = exchange_at(&lb, remote, path).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(!answer.contains("strategy\""), "{path}: {answer}");
        let answer = exchange_at(&lb, local, path).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
    }
    // The lb's health answers everyone (probes, balancers in front).
    let answer = exchange_at(&lb, remote, "/lb/health/live").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Everything else goes to the backends for both.
    assert!(exchange_at(&lb, remote, "/echo")
        .await
        .starts_with("HTTP/1.1 200"));
}
