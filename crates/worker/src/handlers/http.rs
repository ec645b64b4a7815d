//! `handler = "http"`: each attempt POSTs the input as JSON to the type's URL
//! — webhook delivery, with the receiver de-duplicating by `Idempotency-Key`
//! (delivery is at least once).
//!
//! 2xx succeeds (the answer is the result); 408, 425, 429, 5xx, connection
//! errors and timeouts are retried (honouring `Retry-After`); any other
//! answer is permanent. With a `secret`, `Weir-Signature: t=<unix>,v1=<hex>`
//! carries an HMAC-SHA256 of `"<t>.<body>"` (Stripe's scheme).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::Semaphore;
use weir_core::task_type::HttpSpec;

use crate::handler::{Handler, HandlerError, Job};

/// Most bytes of an error answer quoted in the task's error.
const ERROR_BODY_BYTES: usize = 512;
/// Idle keep-alive connections kept per receiver host.
const IDLE_PER_HOST: usize = 256;

pub struct HttpHandler {
    spec: HttpSpec,
    client: reqwest::Client,
    /// The type's `max_in_flight`, per worker process.
    in_flight: Option<Arc<Semaphore>>,
}

impl HttpHandler {
    pub fn new(spec: &HttpSpec) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: {name:?} is not a header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("headers.{name}: not a valid header value"))?;
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .pool_idle_timeout(Duration::from_secs(60));
        if let Some(path) = &spec.ca_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("ca_file {}: no certificate in it", path.display()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| format!("http client: {e}"))?;
        Ok(HttpHandler {
            spec: spec.clone(),
            client,
            in_flight: spec.max_in_flight.map(|n| Arc::new(Semaphore::new(n))),
        })
    }
}

#[async_trait]
impl Handler for HttpHandler {
    async fn run(&self, job: Job) -> Result<Value, HandlerError> {
        let _permit = match &self.in_flight {
            Some(s) => Some(
                s.acquire()
                    .await
                    .map_err(|_| HandlerError::retryable("handler closed"))?,
            ),
            None => None,
        };
        let body = serde_json::to_vec(&job.input)
            .map_err(|e| HandlerError::permanent(format!("input: {e}")))?;
        let id = job.id.to_string();
        let mut request = self
            .client
            .post(&self.spec.url)
            .header(CONTENT_TYPE, "application/json")
            .header("weir-task-id", &id)
            .header("weir-attempt", job.attempt.to_string())
            // What `POST /workflows/{id}/steps` takes from a step's endpoint.
            .header("weir-lease-token", job.lease_token.to_string())
            .header("idempotency-key", &id);
        // The receiver's work joins the task's trace under this delivery.
        let mut span = job.trace.as_ref().and_then(|attempt| {
            weir_trace::tracer().start("task.delivery", weir_trace::SpanKind::Client, Some(attempt))
        });
        if let Some(span) = &mut span {
            let url = self.spec.url.clone();
            span.set_attribute(|| weir_trace::KeyValue::new("url.full", url));
            request = request.header("traceparent", span.context().traceparent());
            if let Some(state) = &span.context().tracestate {
                request = request.header("tracestate", state.as_str());
            }
        }
        if let Some(secret) = &self.spec.secret {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            request = request.header("weir-signature", signature(secret, t, &body));
        }
        let sent = request.body(body).send().await;
        if let Some(mut span) = span {
            match &sent {
                Ok(answer) => {
                    let status = i64::from(answer.status().as_u16());
                    span.set_attribute(|| {
                        weir_trace::KeyValue::new("http.response.status_code", status)
                    });
                    if !answer.status().is_success() {
                        span.set_error(format!("answered {}", answer.status()));
                    }
                }
                Err(e) => span.set_error(chain(e as &dyn std::error::Error)),
            }
            span.end();
        }
        let response = sent.map_err(|e| {
            HandlerError::retryable(format!(
                "delivery to {} failed: {}",
                self.spec.url,
                chain(&e)
            ))
        })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let (bytes, truncated) = read_bounded(response, self.spec.max_response_bytes).await?;
        if status.is_success() {
            return Ok(result_of(status.as_u16(), &bytes, truncated));
        }
        let quoted = String::from_utf8_lossy(&bytes[..bytes.len().min(ERROR_BODY_BYTES)]);
        let message = format!("{} answered {status}: {quoted}", self.spec.url);
        let code = status.as_u16();
        if matches!(code, 408 | 425 | 429) || status.is_server_error() {
            Err(HandlerError::retryable(message).retry_after(retry_after))
        } else {
            Err(HandlerError::permanent(message))
        }
    }
}

/// `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn signature(secret: &str, t: u64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The answer as a result: its JSON, or its status and text when it is not
/// JSON (or was cut at the limit).
fn result_of(status: u16, bytes: &[u8], truncated: bool) -> Value {
    if bytes.is_empty() {
        return json!({ "status": status });
    }
    if !truncated {
        if let Ok(v) = serde_json::from_slice(bytes) {
            return v;
        }
    }
    json!({
        "status": status,
        "body": String::from_utf8_lossy(bytes),
        "truncated": truncated,
    })
}

/// Reads at most `limit` bytes of the body; the rest is dropped unread.
async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), HandlerError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HandlerError::retryable(format!("reading the answer: {}", chain(&e))))?
    {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok((bytes, true));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, false))
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// An error with its causes, which reqwest keeps apart ("connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_documented_scheme() {
        // Computed independently: HMAC-SHA256("secret", "1700000000.{}").
        let sig = signature("secret", 1_700_000_000, b"{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(b"1700000000.{}");
        let want = hex::encode(mac.finalize().into_bytes());
        assert_eq!(sig, format!("t=1700000000,v1={want}"));
    }

    #[test]
    fn answers_become_results() {
        assert_eq!(result_of(200, br#"{"ok":1}"#, false), json!({"ok": 1}));
        assert_eq!(result_of(204, b"", false), json!({"status": 204}));
        assert_eq!(
            result_of(200, b"fine", false),
            json!({"status": 200, "body": "fine", "truncated": false})
        );
        assert_eq!(result_of(200, br#"{"ok":"#, true)["truncated"], json!(true));
    }

    fn job() -> Job {
        Job {
            id: weir_core::TaskId::new(),
            task_type: weir_core::TaskType::new("deliver").unwrap(),
            input: json!({"order": 1}),
            attempt: 1,
            max_attempts: 3,
            timeout: Duration::from_secs(10),
            progress: crate::handler::Progress::default(),
            cancel: tokio_util::sync::CancellationToken::new(),
            lease_token: 1,
            workflow: Default::default(),
            trace: None,
        }
    }

    /// An HTTPS receiver with a self-signed certificate for `localhost`;
    /// returns its port and the certificate's PEM.
    async fn https_receiver() -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    // The head, then as many body bytes as it announces.
                    loop {
                        let Ok(n) = tls.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let len: usize = text
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            if got.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                    let body = br#"{"tls":true}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = tls.write_all(head.as_bytes()).await;
                    let _ = tls.write_all(body).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (port, ck.cert.pem())
    }

    fn spec(url: String, ca_file: Option<std::path::PathBuf>) -> HttpSpec {
        HttpSpec {
            url,
            headers: Default::default(),
            secret: None,
            ca_file,
            max_in_flight: None,
            max_response_bytes: 1024,
        }
    }

    #[tokio::test]
    async fn delivers_over_https_trusting_only_the_given_ca() {
        let (port, pem) = https_receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pem).unwrap();
        let url = format!("https://localhost:{port}/hook");
        let trusted = HttpHandler::new(&spec(url.clone(), Some(ca))).unwrap();
        assert_eq!(trusted.run(job()).await.unwrap(), json!({"tls": true}));
        // The system's roots do not know a self-signed certificate.
        let untrusted = HttpHandler::new(&spec(url, None)).unwrap();
        let e = untrusted.run(job()).await.unwrap_err();
        assert!(!e.permanent, "{e:?}");
        assert!(
            e.message.contains("certificate") || e.message.contains("Unknown"),
            "{e:?}"
        );
        let missing = HttpHandler::new(&spec("https://x".into(), Some("/nonexistent.pem".into())));
        assert!(missing.err().unwrap().contains("ca_file /nonexistent.pem"));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}
