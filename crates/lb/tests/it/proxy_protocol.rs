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
    let mut conn = TcpStream::connect(lb.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(b"GET /echo HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n");
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
