//! `https://` and `h2c://` backends: TLS verified against a CA file, SNI,
//! mutual TLS, HTTP/2 chosen by ALPN or by prior knowledge, and what gRPC
//! needs end to end (streams both ways at once, trailers).

// tonic's services return its own large error type, `tonic::Status`.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use weir_lb::edge::tls::CertFiles;
use weir_lb::upstream::tls::BackendTlsSettings;

use crate::support::{poll, TestLb};

/// Frames as a body's stream.
type FrameStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync>,
>;

/// A body of the frames sent on `rx`, as they are sent.
fn frames(rx: tokio::sync::mpsc::UnboundedReceiver<Frame<Bytes>>) -> StreamBody<FrameStream> {
    StreamBody::new(Box::pin(futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|frame| (Ok(frame), rx)) },
    )))
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// `/health`; `/echo`: the request as the backend saw it, as JSON;
/// `/stream`: each request body frame echoed as it arrives, then trailers.
async fn backend_answer(req: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    match req.uri().path() {
        "/stream" => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Frame<Bytes>>();
            let mut body = req.into_body();
            tokio::spawn(async move {
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        let _ = tx.send(Frame::data(data));
                    }
                }
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                let _ = tx.send(Frame::trailers(trailers));
            });
            let body = frames(rx);
            Ok(Response::new(BodyExt::boxed(body)))
        }
        path => {
            let headers: serde_json::Map<String, Value> = req
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), json!(v.to_str().unwrap_or(""))))
                .collect();
            let seen = json!({
                "path": path,
                "version": format!("{:?}", req.version()),
                "authority": req.uri().authority().map(|a| a.to_string()),
                "headers": headers,
            });
            Ok(Response::new(BodyExt::boxed(Full::new(Bytes::from(
                seen.to_string(),
            )))))
        }
    }
}

/// A backend on `127.0.0.1:0`: TLS when `tls` is given (with its ALPN),
/// HTTP/2 only (prior knowledge) when `h2_only`, else HTTP/1.1 and HTTP/2.
async fn start_backend(
    tls: Option<rustls::ServerConfig>,
    h2_only: bool,
) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if h2_only {
                    builder = builder.http2_only();
                }
                let service = hyper::service::service_fn(backend_answer);
                let _ = match acceptor {
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(stream).await else {
                            return;
                        };
                        builder.serve_connection(TokioIo::new(tls), service).await
                    }
                    None => {
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                };
            });
        }
    });
    (port, task)
}

/// A self-signed certificate for `name`, as files and as DER.
fn certificate(dir: &Path, stem: &str, name: &str) -> (CertFiles, CertificateDer<'static>) {
    let generated = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let files = CertFiles {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    std::fs::write(&files.cert, generated.cert.pem()).unwrap();
    std::fs::write(&files.key, generated.signing_key.serialize_pem()).unwrap();
    (files, generated.cert.der().clone())
}

fn server_config(
    files: &CertFiles,
    alpn: &[&[u8]],
    client_ca: Option<&CertificateDer<'static>>,
) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = vec![CertificateDer::from_pem_file(&files.cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

async fn lb_for(backend: String, tls: BackendTlsSettings) -> TestLb {
    TestLb::start_with(vec![backend], move |c| c.backend_tls = tls).await
}

async fn echo_through(lb: &TestLb) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{}/echo", lb.base))
        .header("host", "api.example")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Whether `/lb/stats` shows the backend healthy.
async fn healthy(lb: &TestLb) -> bool {
    lb.stats().await["backends"][0]["healthy"] == json!(true)
}

#[tokio::test]
async fn an_https_backend_is_verified_against_the_ca_file_and_gets_http2_or_http1_by_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = certificate(dir.path(), "backend", "localhost");
    for (alpn, version) in [
        (&[&b"h2"[..], b"http/1.1"][..], "HTTP/2.0"),
        (&[&b"http/1.1"[..]][..], "HTTP/1.1"),
    ] {
        let (port, task) = start_backend(Some(server_config(&files, alpn, None)), false).await;
        let tls = BackendTlsSettings {
            ca: Some(files.cert.clone()),
            client_cert: None,
        };
        let lb = lb_for(format!("https://localhost:{port}"), tls).await;
        for _ in 0..3 {
            let (status, seen) = echo_through(&lb).await;
            assert_eq!(status, 200, "{seen}");
            assert!(healthy(&lb).await);
            assert_eq!(seen["version"], version);
            assert_eq!(seen["path"], "/echo");
            assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
            if version == "HTTP/2.0" {
                assert_eq!(
                    seen["authority"], "api.example",
                    "the client's Host is :authority"
                );
            } else {
                assert_eq!(seen["headers"]["host"], "api.example");
            }
        }
        lb.stop().await;
        task.abort();
    }
}

#[tokio::test]
async fn an_https_backend_whose_certificate_is_not_trusted_gets_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = certificate(dir.path(), "backend", "localhost");
    let (other, _) = certificate(dir.path(), "other", "localhost");
    let (port, task) =
        start_backend(Some(server_config(&files, &[b"http/1.1"], None)), false).await;
    let tls = BackendTlsSettings {
        ca: Some(other.cert.clone()),
        client_cert: None,
    };
    let lb = lb_for(format!("https://localhost:{port}"), tls).await;
    let (status, body) = echo_through(&lb).await;
    assert!(status == 502 || status == 503, "{status} {body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    // The health checks go over TLS too, and fail the same way.
    poll(Duration::from_secs(10), || async {
        (!healthy(&lb).await).then_some(())
    })
    .await;
    lb.stop().await;
    task.abort();
}

#[tokio::test]
async fn a_backend_that_requires_a_client_certificate_gets_the_configured_one() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = certificate(dir.path(), "backend", "localhost");
    let (client, client_der) = certificate(dir.path(), "client", "weir-lb");
    let (port, task) = start_backend(
        Some(server_config(&server, &[b"http/1.1"], Some(&client_der))),
        false,
    )
    .await;
    let without = lb_for(
        format!("https://localhost:{port}"),
        BackendTlsSettings {
            ca: Some(server.cert.clone()),
            client_cert: None,
        },
    )
    .await;
    let (status, _) = echo_through(&without).await;
    assert!(
        status == 502 || status == 503,
        "served without a client certificate: {status}"
    );
    without.stop().await;
    let with = lb_for(
        format!("https://localhost:{port}"),
        BackendTlsSettings {
            ca: Some(server.cert.clone()),
            client_cert: Some(client.clone()),
        },
    )
    .await;
    let (status, seen) = echo_through(&with).await;
    assert_eq!(status, 200, "{seen}");
    with.stop().await;
    task.abort();
}

#[test]
fn bad_backend_tls_files_stop_the_lb_with_one_line_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.pem");
    let mut config = weir_lb::LbConfig::new(vec!["https://localhost:1".into()]);
    config.backend_tls.ca = Some(missing.clone());
    let err = weir_lb::Lb::new(config)
        .err()
        .expect("started with a missing CA file");
    assert!(
        err.starts_with("--backend-ca: ") && err.contains("absent.pem"),
        "{err}"
    );
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate").unwrap();
    let mut config = weir_lb::LbConfig::new(vec!["https://localhost:1".into()]);
    config.backend_tls.ca = Some(empty);
    let err = weir_lb::Lb::new(config)
        .err()
        .expect("started with an empty CA file");
    assert!(err.contains("no PEM certificate"), "{err}");
    let err = weir_lb::Lb::new(weir_lb::LbConfig::new(vec!["ftp://x:1".into()]))
        .err()
        .unwrap();
    assert!(err.contains("ftp://"), "{err}");
}

/// What gRPC needs through the lb: an HTTP/2 client (prior knowledge on
/// the plain listener) to an `h2c://` backend, the request and the answer
/// streaming at the same time, and the trailers passed on.
#[tokio::test]
async fn an_h2c_backend_streams_both_ways_and_its_trailers_reach_the_client() {
    let (port, task) = start_backend(None, true).await;
    let lb = lb_for(
        format!("h2c://127.0.0.1:{port}"),
        BackendTlsSettings::default(),
    )
    .await;
    let (status, seen) = echo_through(&lb).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["version"], "HTTP/2.0");

    let addr = lb.base.trim_start_matches("http://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Frame<Bytes>>();
    let body = frames(rx);
    let req = Request::post(format!("http://{addr}/stream"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap();
    tx.send(Frame::data(Bytes::from_static(b"ping 1"))).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut answer = resp.into_body();
    // Each message comes back before the next is sent: both directions are
    // open at once, nothing waits for the whole request.
    for i in 1..=3 {
        let frame = tokio::time::timeout(Duration::from_secs(5), answer.frame())
            .await
            .expect("no echo while the request is still open")
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), format!("ping {i}").as_bytes());
        if i < 3 {
            tx.send(Frame::data(Bytes::from(format!("ping {}", i + 1))))
                .unwrap();
        }
    }
    drop(tx);
    let mut trailers = None;
    while let Some(frame) = answer.frame().await {
        if let Ok(t) = frame.unwrap().into_trailers() {
            trailers = Some(t);
        }
    }
    let trailers = trailers.expect("the backend's trailers were lost");
    assert_eq!(trailers["grpc-status"], "0");
    lb.stop().await;
    task.abort();
}

/// A gRPC message: what the codegen of `message Text { string text = 1; }`
/// would write.
#[derive(Clone, PartialEq, prost::Message)]
struct Text {
    #[prost(string, tag = "1")]
    text: String,
}

/// `Echo.Unary`: the text, upper-cased.
struct Unary;

impl tonic::server::UnaryService<Text> for Unary {
    type Response = Text;
    type Future = std::future::Ready<Result<tonic::Response<Text>, tonic::Status>>;
    fn call(&mut self, request: tonic::Request<Text>) -> Self::Future {
        let text = request.into_inner().text.to_uppercase();
        std::future::ready(Ok(tonic::Response::new(Text { text })))
    }
}

/// `Echo.Chat`: every message answered as it comes.
struct Chat;

type TextStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Text, tonic::Status>> + Send>>;

impl tonic::server::StreamingService<Text> for Chat {
    type Response = Text;
    type ResponseStream = TextStream;
    type Future = std::future::Ready<Result<tonic::Response<TextStream>, tonic::Status>>;
    fn call(&mut self, request: tonic::Request<tonic::Streaming<Text>>) -> Self::Future {
        use futures_util::StreamExt;
        let answers = request.into_inner().map(|m| {
            m.map(|m| Text {
                text: format!("re: {}", m.text),
            })
        });
        std::future::ready(Ok(tonic::Response::new(Box::pin(answers) as TextStream)))
    }
}

/// A tonic gRPC server on `127.0.0.1:0`, HTTP/2 without TLS.
async fn start_grpc_backend() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let mut grpc = tonic::server::Grpc::new(tonic::codec::ProstCodec::default());
                    let resp = match req.uri().path() {
                        "/echo.Echo/Unary" => grpc.unary(Unary, req).await,
                        "/echo.Echo/Chat" => grpc.streaming(Chat, req).await,
                        "/health" => Response::new(tonic::body::empty_body()),
                        _ => tonic::Status::unimplemented("no such method").into_http(),
                    };
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http2_only()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn grpc_unary_and_bidirectional_streaming_work_through_the_lb_to_a_tonic_server() {
    let (port, task) = start_grpc_backend().await;
    let lb = lb_for(
        format!("h2c://127.0.0.1:{port}"),
        BackendTlsSettings::default(),
    )
    .await;
    let channel = tonic::transport::Channel::from_shared(lb.base.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    let codec = || tonic::codec::ProstCodec::<Text, Text>::default();

    client.ready().await.unwrap();
    let answer = client
        .unary(
            tonic::Request::new(Text {
                text: "hello".into(),
            }),
            http::uri::PathAndQuery::from_static("/echo.Echo/Unary"),
            codec(),
        )
        .await
        .unwrap();
    assert_eq!(answer.into_inner().text, "HELLO");

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Text>();
    let outbound =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    tx.send(Text { text: "one".into() }).unwrap();
    client.ready().await.unwrap();
    let mut inbound = client
        .streaming(
            tonic::Request::new(outbound),
            http::uri::PathAndQuery::from_static("/echo.Echo/Chat"),
            codec(),
        )
        .await
        .unwrap()
        .into_inner();
    // Each answer comes while the request stream is still open.
    for (sent, next) in [
        ("one", Some("two")),
        ("two", Some("three")),
        ("three", None),
    ] {
        let got = tokio::time::timeout(Duration::from_secs(5), inbound.message())
            .await
            .expect("no answer while the stream is open")
            .unwrap()
            .unwrap();
        assert_eq!(got.text, format!("re: {sent}"));
        if let Some(next) = next {
            tx.send(Text { text: next.into() }).unwrap();
        }
    }
    drop(tx);
    // The end of the stream: the grpc-status trailer arrived as OK.
    assert_eq!(inbound.message().await.unwrap(), None);

    // An error status travels in the trailers too.
    client.ready().await.unwrap();
    let err = client
        .unary(
            tonic::Request::new(Text { text: "x".into() }),
            http::uri::PathAndQuery::from_static("/echo.Echo/Missing"),
            codec(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    lb.stop().await;
    task.abort();
}
