//! `/lb/metrics`: the balancer's counters in Prometheus text format.
//!
//! The hot path only bumps atomics; a scrape copies them into a recorder of
//! this balancer's own (the `metrics` facade with the Prometheus exporter,
//! never installed globally) and renders it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics::{counter, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::state::Lb;

pub async fn render(State(lb): State<Arc<Lb>>) -> Response {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        for b in lb.backends.snapshot().iter() {
            let s = b.stats();
            let id = s.id.clone();
            counter!("weir_lb_backend_requests_total", "backend" => id.clone())
                .absolute(s.requests);
            counter!("weir_lb_backend_errors_total", "backend" => id.clone()).absolute(s.errors);
            gauge!("weir_lb_backend_in_flight", "backend" => id.clone()).set(s.in_flight as f64);
            gauge!("weir_lb_backend_healthy", "backend" => id.clone()).set(if s.healthy {
                1.0
            } else {
                0.0
            });
            gauge!("weir_lb_backend_draining", "backend" => id.clone()).set(if s.draining {
                1.0
            } else {
                0.0
            });
            gauge!("weir_lb_backend_ejected", "backend" => id.clone()).set(if s.ejected {
                1.0
            } else {
                0.0
            });
            // Ejections can be shorter than a scrape interval: the count
            // shows every one.
            counter!("weir_lb_backend_ejections_total", "backend" => id.clone())
                .absolute(s.ejections);
            gauge!("weir_lb_backend_latency_ewma_seconds", "backend" => id.clone())
                .set(s.latency_ewma_ms / 1000.0);
            for (q, v) in [("0.5", s.latency_p50_ms), ("0.99", s.latency_p99_ms)] {
                if let Some(ms) = v {
                    gauge!("weir_lb_backend_latency_seconds", "backend" => id.clone(), "quantile" => q).set(ms / 1000.0);
                }
            }
        }
        gauge!("weir_lb_queued_requests").set(lb.queued.load(Ordering::Relaxed) as f64);
        counter!("weir_lb_late_answers_total").absolute(lb.late_answers.load(Ordering::Relaxed));
        counter!("weir_lb_rejected_total", "reason" => "overload")
            .absolute(lb.rejected_overload.load(Ordering::Relaxed));
        counter!("weir_lb_rejected_total", "reason" => "rate_limit")
            .absolute(lb.rejected_rate_limit.load(Ordering::Relaxed));
        counter!("weir_lb_rejected_total", "reason" => "connections_per_ip")
            .absolute(lb.rejected_connections.load(Ordering::Relaxed));
        counter!("weir_lb_rejected_total", "reason" => "no_backend")
            .absolute(lb.rejected_no_backend.load(Ordering::Relaxed));
        gauge!("weir_lb_rate_limit_tracked_clients").set(lb.rate_limits.tracked_clients() as f64);
        if let Some(tls) = &lb.tls {
            for (server_name, not_after) in tls.expiries() {
                gauge!(
                    "weir_lb_tls_certificate_expiry_timestamp_seconds",
                    "server_name" => server_name
                )
                .set(not_after as f64);
            }
        }
    });
    let mut text = handle.render();
    render_latency_histograms(&lb, &mut text);
    ([(header::CONTENT_TYPE, weir_telemetry::CONTENT_TYPE)], text).into_response()
}

/// `weir_lb_request_duration_seconds`, per backend. The samples already sit in
/// each backend's lock-free histogram, so they are written out here as
/// Prometheus buckets rather than recorded twice.
fn render_latency_histograms(lb: &Lb, out: &mut String) {
    use std::fmt::Write;
    let name = "weir_lb_request_duration_seconds";
    let bounds = weir_telemetry::SECONDS_BUCKETS;
    let _ = writeln!(
        out,
        "# HELP {name} Time from sending a request upstream to its answer's headers."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for b in lb.backends.snapshot().iter() {
        let id = b.id().replace('\\', "\\\\").replace('"', "\\\"");
        let h = &b.latency;
        let count = h.count();
        for (bound, n) in bounds.iter().zip(h.cumulative(bounds)) {
            let _ = writeln!(out, "{name}_bucket{{backend=\"{id}\",le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{backend=\"{id}\",le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{backend=\"{id}\"}} {}",
            h.sum().as_secs_f64()
        );
        let _ = writeln!(out, "{name}_count{{backend=\"{id}\"}} {count}");
    }
}
