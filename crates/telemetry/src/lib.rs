//! Prometheus metrics for every weir process.
//!
//! Libraries record through the `metrics` facade (`counter!`, `gauge!`,
//! `histogram!`); this crate installs the one process-wide Prometheus recorder
//! the first time anything asks for it and renders it for `/metrics`. A
//! process that never installs it pays nothing: the facade's calls are no-ops.
//!
//! # Layout
//! - [`install`]: the recorder (idempotent; durations get histogram buckets).
//! - [`render`]: the text exposition of everything recorded so far.
//! - [`render_scoped`]: what one closure records, rendered apart (series of
//!   what exists at scrape time, which end when their subject does).
//! - [`router`]: `GET /metrics` for a process without an HTTP API (workers).

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds, in seconds, for every `*_seconds` histogram: 0.5 ms to 60 s,
/// the range between a cached answer and a slow task.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// The Prometheus content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle. When some
/// other recorder is already installed (a test harness), metrics go there and
/// the handle renders an empty page.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Everything recorded in this process, in Prometheus text format.
pub fn render() -> String {
    let handle = install();
    // Histograms are drained into their buckets here rather than by a timer.
    handle.run_upkeep();
    handle.render()
}

/// The text exposition of what `record` records, through a recorder of its
/// own rather than the process-wide one, which keeps every series it has
/// seen at its last value: for gauges read at scrape time whose series must
/// end with their subject (a task type no longer queued, a worker gone).
pub fn render_scoped(record: impl FnOnce()) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, record);
    handle.render()
}

/// `GET /metrics` and nothing else.
pub fn router() -> Router {
    Router::new().route("/metrics", get(metrics_page))
}

async fn metrics_page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_render_as_histograms_with_buckets() {
        install();
        metrics::histogram!("weir_telemetry_test_duration_seconds", "route" => "/x").record(0.003);
        metrics::counter!("weir_telemetry_test_total").increment(2);
        let text = render();
        assert!(
            text.contains(
                r#"weir_telemetry_test_duration_seconds_bucket{route="/x",le="0.005"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"weir_telemetry_test_duration_seconds_bucket{route="/x",le="0.0025"} 0"#
            ),
            "{text}"
        );
        assert!(text.contains("weir_telemetry_test_total 2"), "{text}");
    }

    #[test]
    fn scoped_series_stay_out_of_the_process_wide_page() {
        install();
        let scoped = render_scoped(|| {
            metrics::gauge!("weir_telemetry_scoped_test", "type" => "x").set(3.0);
        });
        assert!(
            scoped.contains(r#"weir_telemetry_scoped_test{type="x"} 3"#),
            "{scoped}"
        );
        assert!(!render().contains("weir_telemetry_scoped_test"));
    }
}
