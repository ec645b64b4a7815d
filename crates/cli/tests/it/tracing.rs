//! Traces across every hop: a client's `traceparent` continued by the lb,
//! an API node, the task it queued, a worker's attempt and its HTTP
//! delivery — each a separate process, the spans exported by OTLP/HTTP to a
//! collector inside the test, which decodes their protobuf. Without an
//! exporter, the context passes through untouched to the receiver and to an
//! external (Python) worker.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{json, Value};

use crate::processes::{listening_url, migrated_database, wait_all_succeeded_within, WeirProcess};
use crate::python_worker::{python, up_with};
use crate::support::poll;
use crate::task_types::Receiver;

/// One exported span, as the collector decoded it.
#[derive(Clone, Debug)]
struct Exported {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// An OTLP/HTTP collector: every span of every export, decoded.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Exported>>>,
}

impl Collector {
    async fn start() -> (Collector, String) {
        let c = Collector::default();
        let app = axum::Router::new()
            .route("/v1/traces", post(collect))
            .with_state(c.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (c, url)
    }

    fn of_trace(&self, trace_id: &str) -> Vec<Exported> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

async fn collect(State(c): State<Collector>, body: Bytes) -> axum::http::StatusCode {
    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
    let mut spans = c.spans.lock().unwrap();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push(Exported {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                });
            }
        }
    }
    axum::http::StatusCode::OK
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

fn client_traceparent() -> String {
    format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
}

/// Submits a `deliver` task through `base` with the client's
/// `traceparent`; waits until it succeeded and returns its id.
async fn submit_traced(base: &str) -> String {
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{base}/tasks"))
        .header("traceparent", client_traceparent())
        .header("tracestate", "vendor=abc")
        .json(&json!({"type": "deliver", "input": {"order": 7}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_all_succeeded_within(base, std::slice::from_ref(&id), Duration::from_secs(30)).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_lb_through_an_api_node_and_a_worker_to_the_receiver() {
    let (collector, collector_url) = Collector::start().await;
    let (receiver, receiver_url) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!("[task_types.deliver]\nhandler = \"http\"\nurl = \"{receiver_url}/ok\"\n"),
    )
    .unwrap();
    let config = config.display().to_string();
    let (_db, url) = migrated_database().await;
    // Exports every 100 ms (the SDK's standard variable) rather than 5 s.
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let traced = ["--otlp-endpoint", collector_url.as_str()];
    let node = [
        "--database-url",
        url.as_str(),
        "--no-migrate",
        "--config",
        &config,
    ];
    let (_api, line) = WeirProcess::start_with_env(
        &[&["api", "--listen", "127.0.0.1:0"][..], &node, &traced].concat(),
        &env,
        "listening on",
    );
    let api_url = listening_url(&line);
    let (_worker, _) = WeirProcess::start_with_env(
        &[&["worker"][..], &node, &traced].concat(),
        &env,
        "running up to",
    );
    let (_lb, line) = WeirProcess::start_with_env(
        &[
            &["lb", "--listen", "127.0.0.1:0", "--backends", &api_url][..],
            &traced,
        ]
        .concat(),
        &env,
        "listening on",
    );
    let base = listening_url(&line);
    let id = submit_traced(&base).await;
    let wanted = [
        "lb.request",
        "api.request",
        "task.enqueue",
        "task.queue_wait",
        "task.attempt",
        "task.delivery",
    ];
    let spans = poll(Duration::from_secs(30), || async {
        let spans = collector.of_trace(CLIENT_TRACE);
        let all = wanted
            .iter()
            .all(|name| spans.iter().any(|s| s.name == *name));
        all.then_some(spans)
    })
    .await;
    let span = |name: &str| -> Exported {
        let mut of = spans.iter().filter(|s| s.name == name);
        let one = of.next().unwrap().clone();
        assert!(of.next().is_none(), "two {name} spans: {spans:#?}");
        one
    };
    let (lb, api, enqueue) = (
        span("lb.request"),
        span("api.request"),
        span("task.enqueue"),
    );
    let (wait, attempt, delivery) = (
        span("task.queue_wait"),
        span("task.attempt"),
        span("task.delivery"),
    );
    // Each hop's parent is the hop before it; the lb's is the client's.
    assert_eq!(lb.parent_span_id, CLIENT_SPAN);
    assert_eq!(api.parent_span_id, lb.span_id);
    assert_eq!(enqueue.parent_span_id, api.span_id);
    assert_eq!(wait.parent_span_id, enqueue.span_id);
    assert_eq!(attempt.parent_span_id, enqueue.span_id);
    assert_eq!(delivery.parent_span_id, attempt.span_id);
    // Each from the process that did it.
    assert_eq!(lb.service, "weir-lb");
    assert_eq!(
        (api.service.as_str(), enqueue.service.as_str()),
        ("weir-api", "weir-api")
    );
    assert_eq!(attempt.service, "weir-worker");
    // The receiver's request is the delivery span's child, its state kept.
    let delivered = receiver.deliveries_of(&id);
    let headers = &delivered[0].headers;
    assert_eq!(
        headers["traceparent"],
        format!("00-{CLIENT_TRACE}-{}-01", delivery.span_id).as_str()
    );
    assert_eq!(headers["tracestate"], "vendor=abc");

    // A request without a trace starts one at the lb (sampled: ratio 1).
    let resp = reqwest::Client::new()
        .get(format!("{base}/tasks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    poll(Duration::from_secs(30), || async {
        let spans = collector.spans.lock().unwrap().clone();
        let root = spans
            .iter()
            .find(|s| s.name == "lb.request" && s.trace_id != CLIENT_TRACE)?;
        assert_eq!(root.parent_span_id, "", "a new trace's lb span is its root");
        spans
            .iter()
            .any(|s| s.name == "api.request" && s.parent_span_id == root.span_id)
            .then_some(())
    })
    .await;
}

/// Without an exporter nothing is recorded and nothing is changed: the
/// client's context reaches the receiver, and an external worker's claim,
/// as it was sent — the Python client hands it to its handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_exporter_the_clients_context_passes_through_every_hop() {
    let (receiver, receiver_url) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!(
            "[task_types.deliver]\nhandler = \"http\"\nurl = \"{receiver_url}/ok\"\n\
             [task_types.traced]\nhandler = \"external\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data").display().to_string();
    let config = config.display().to_string();
    let (_up, base) = up_with(&data, &["--config", &config, "--worker-token", "tok"]);
    let id = submit_traced(&base).await;
    let delivered = receiver.deliveries_of(&id);
    assert_eq!(
        delivered[0].headers["traceparent"],
        client_traceparent().as_str()
    );
    assert_eq!(delivered[0].headers["tracestate"], "vendor=abc");

    // An external task: the Python worker's handler sees the context.
    let resp = reqwest::Client::new()
        .post(format!("{base}/tasks"))
        .header("traceparent", client_traceparent())
        .json(&json!({"type": "traced", "input": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let task: Value = resp.json().await.unwrap();
    let script = format!(
        "import sys, json\n\
         sys.path.insert(0, {clients:?})\n\
         import weir_worker\n\
         w = weir_worker.Worker({base:?}, 'tok', worker_id='py-trace', concurrency=1, wait=1.0)\n\
         @w.task('traced')\n\
         def traced(input, task):\n    return task.trace_headers()\n\
         w.run(max_tasks=1, handle_signals=False)\n",
        clients = concat!(env!("CARGO_MANIFEST_DIR"), "/../../clients/python"),
    );
    let out = python(&["-c", &script]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = task["task_id"].as_str().unwrap();
    let done: Value = reqwest::get(format!("{base}/tasks/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"], json!({"traceparent": client_traceparent()}));
}

/// A bad setting stops the process at start with one line naming the flag.
#[test]
fn bad_trace_settings_stop_a_role_at_start() {
    for (flags, key) in [
        (
            &["--otlp-endpoint", "collector:4318"][..],
            "--otlp-endpoint",
        ),
        (&["--trace-sample-ratio", "2"][..], "--trace-sample-ratio"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(
                [
                    &[
                        "lb",
                        "--listen",
                        "127.0.0.1:0",
                        "--backends",
                        "http://127.0.0.1:9",
                    ][..],
                    flags,
                ]
                .concat(),
            )
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flags:?} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(key), "{stderr}");
    }
}
