//! Spans to an OTLP/HTTP collector: the SDK's batch processor (bounded
//! queue, batches, its own thread; tuned by the standard `OTEL_BSP_*`
//! variables) over the `opentelemetry-otlp` exporter (protobuf), whose
//! requests run on the Tokio runtime weir started it from.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry::InstrumentationScope;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SpanProcessor};
use opentelemetry_sdk::Resource;

use crate::Error;

/// A request to the collector gives up after this long.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// A collector that cannot be reached is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct Export {
    pub processor: BatchSpanProcessor,
    pub scope: InstrumentationScope,
}

impl Export {
    pub fn new(endpoint: &str, service: &str) -> Result<Export, Error> {
        let url = traces_url(endpoint)?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Endpoint("exporting needs a Tokio runtime".into()))?;
        let client = RuntimeClient {
            client: reqwest::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| Error::Endpoint(e.to_string()))?,
            runtime,
            last_warned: AtomicU64::new(0),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| Error::Endpoint(e.to_string()))?;
        let mut processor = BatchSpanProcessor::builder(exporter).build();
        processor.set_resource(
            &Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        );
        Ok(Export {
            processor,
            scope: InstrumentationScope::builder("weir")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        })
    }

    pub fn shutdown(&self) {
        if let Err(e) = self.processor.shutdown() {
            tracing::warn!(error = %e, "traces not all exported at shutdown");
        }
    }
}

/// The collector's traces URL: a base (`http://collector:4318`, as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is given) gains `/v1/traces`.
fn traces_url(endpoint: &str) -> Result<String, Error> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| Error::Endpoint(format!("{endpoint:?} is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(Error::Endpoint(format!(
            "{endpoint:?} is not an http:// or https:// URL"
        )));
    }
    let base = endpoint.trim_end_matches('/');
    Ok(match uri.path().trim_end_matches('/') {
        "" => format!("{base}/v1/traces"),
        _ => base.to_owned(),
    })
}

/// The exporter's HTTP client: each request runs as a task on weir's Tokio
/// runtime (the batch processor's own thread has none), with reqwest.
#[derive(Debug)]
struct RuntimeClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// Seconds since the epoch of the last warning.
    last_warned: AtomicU64,
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let sent = self.runtime.spawn(async move {
            let answer = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = answer.status();
            let headers = answer.headers().clone();
            Ok::<_, reqwest::Error>((status, headers, answer.bytes().await?))
        });
        let (status, headers, body) = match sent.await? {
            Ok(answer) => answer,
            Err(e) => {
                self.warn(&e);
                return Err(e.into());
            }
        };
        if !status.is_success() {
            self.warn(&format!("the collector answered {status}"));
        }
        let mut response = http::Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

impl RuntimeClient {
    fn warn(&self, error: &dyn std::fmt::Display) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let last = self.last_warned.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY.as_secs()
            && self
                .last_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %error, "spans not exported to the OTLP collector");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collectors_base_url_gains_the_traces_path() {
        assert_eq!(
            traces_url("http://collector:4318").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://x.example/otlp/v1/traces").unwrap(),
            "https://x.example/otlp/v1/traces"
        );
        for bad in ["collector:4318", "ftp://x/", "not a url"] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }
}
