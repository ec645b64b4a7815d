//! Task types users define: HTTP delivery, commands, external workers, on
//! both stores — success, retry then success, permanent failure, timeouts,
//! Retry-After, signatures, lease loss, and what the API refuses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use weir_core::{TaskTypeConfig, TaskTypes};

use crate::for_each_store;
use crate::support::{poll, Stack, StackOptions, StoreKind};

const SECRET: &str = "whsec-test";
const WORKER_TOKEN: &str = "test-worker-token";

/// One delivery as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

/// A webhook receiver: `/ok` answers 200 with what it got, `/flaky` fails
/// each task's first two deliveries with 503, `/reject` answers 422,
/// `/busy` answers 429 with `Retry-After: 1` once per task, `/slow` never
/// answers in time, `/hold` holds each task's first delivery for a minute.
#[derive(Clone, Default)]
pub struct Receiver {
    pub seen: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    pub async fn start() -> (Receiver, String) {
        let r = Receiver::default();
        let app = axum::Router::new()
            .route("/{kind}", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    pub fn deliveries_of(&self, task_id: &str) -> Vec<Delivery> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.headers["weir-task-id"] == task_id)
            .cloned()
            .collect()
    }
}

async fn receive(
    State(r): State<Receiver>,
    axum::extract::Path(kind): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let earlier = {
        let mut seen = r.seen.lock().unwrap();
        let key = headers["idempotency-key"].clone();
        let earlier = seen
            .iter()
            .filter(|d| d.headers["idempotency-key"] == key)
            .count();
        seen.push(Delivery {
            headers: headers.clone(),
            body: body.clone(),
            at: Instant::now(),
        });
        earlier
    };
    let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match kind.as_str() {
        "flaky" if earlier < 2 => (StatusCode::SERVICE_UNAVAILABLE, "not yet").into_response(),
        "reject" => (StatusCode::UNPROCESSABLE_ENTITY, "no such order").into_response(),
        "busy" if earlier == 0 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response(),
        "hold" if earlier == 0 => {
            // The first delivery never gets an answer (its worker is killed).
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::OK.into_response()
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
        _ => axum::Json(json!({ "received": input, "delivery": earlier + 1 })).into_response(),
    }
}

pub(crate) fn types(entries: &[(&str, Value)]) -> TaskTypes {
    let mut t = TaskTypes::default();
    for (name, table) in entries {
        let config: TaskTypeConfig = serde_json::from_value(table.clone()).unwrap();
        t.insert(config.into_spec(name).unwrap()).unwrap();
    }
    t
}

async fn submit(stack: &Stack, body: Value) -> String {
    let (status, answer) = stack.post_json("/tasks", &body).await;
    assert_eq!(status, 202, "{answer}");
    answer["task_id"].as_str().unwrap().to_string()
}

async fn http_delivery_outcomes(store: StoreKind) {
    let (receiver, url) = Receiver::start().await;
    let hook = |path: &str, extra: Value| {
        let mut t = json!({
            "handler": "http", "url": format!("{url}/{path}"),
            "retry_backoff": "10ms:5s", "max_attempts": 4,
        });
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        t
    };
    let stack = Stack::start(StackOptions {
        task_types: Some(types(&[
            (
                "deliver",
                hook(
                    "ok",
                    json!({"secret": SECRET, "headers": {"X-Team": "core"}}),
                ),
            ),
            ("deliver_flaky", hook("flaky", json!({}))),
            ("deliver_reject", hook("reject", json!({}))),
            ("deliver_busy", hook("busy", json!({}))),
            (
                "deliver_slow",
                hook("slow", json!({"timeout": "300ms", "max_attempts": 1})),
            ),
        ])),
        workers: 1,
        api_nodes: 1,
        ..StackOptions::on(store)
    })
    .await;

    // Success: the answer is the result; headers and signature as documented.
    let ok = submit(&stack, json!({"type": "deliver", "input": {"order": 17}})).await;
    let done = stack.wait_task(&ok).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["received"], json!({"order": 17}));
    let d = &receiver.deliveries_of(&ok)[0];
    assert_eq!(d.headers["content-type"], "application/json");
    assert_eq!(d.headers["idempotency-key"], ok.as_str());
    assert_eq!(d.headers["weir-attempt"], "1");
    assert_eq!(d.headers["x-team"], "core");
    let sig = d.headers["weir-signature"].to_str().unwrap();
    let (t, v1) = sig
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .expect(sig);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&d.body);
    mac.verify_slice(&hex::decode(v1).unwrap())
        .expect("the signature verifies");

    // Retryable twice, then success on the third delivery.
    let flaky = submit(&stack, json!({"type": "deliver_flaky", "input": {}})).await;
    let done = stack.wait_task(&flaky).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 3);
    assert_eq!(done["errors"].as_array().unwrap().len(), 2);
    let attempts: Vec<_> = receiver
        .deliveries_of(&flaky)
        .iter()
        .map(|d| d.headers["weir-attempt"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);

    // Permanent: dead after one attempt.
    let reject = submit(&stack, json!({"type": "deliver_reject", "input": {}})).await;
    let done = stack.wait_task(&reject).await;
    assert_eq!(done["status"], "dead", "{done}");
    assert_eq!(done["attempts"], 1);
    assert!(done["error"].as_str().unwrap().contains("422"), "{done}");

    // Retry-After: 1 is honoured though the backoff would retry at once.
    let busy = submit(&stack, json!({"type": "deliver_busy", "input": {}})).await;
    let done = stack.wait_task(&busy).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let seen = receiver.deliveries_of(&busy);
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");

    // Timeout: the request is aborted and the attempt fails.
    let slow = submit(&stack, json!({"type": "deliver_slow", "input": {}})).await;
    let done = stack.wait_task(&slow).await;
    assert_eq!(done["status"], "dead", "{done}");
    assert_eq!(done["error"], "timed out after 300ms", "{done}");
    stack.stop().await;
}

async fn command_outcomes_and_a_hung_attempt_frees_its_slot(store: StoreKind) {
    let sh = |script: &str, extra: Value| {
        let mut t = json!({"handler": "command", "command": ["sh", "-c", script],
                           "retry_backoff": "10ms:50ms", "max_attempts": 3});
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        t
    };
    let stack = Stack::start(StackOptions {
        task_types: Some(types(&[
            (
                "echo",
                sh(
                    r#"read i; printf '{"in":%s,"attempt":%s}' "$i" "$WEIR_ATTEMPT""#,
                    json!({}),
                ),
            ),
            (
                "tempfail",
                sh(
                    r#"[ "$WEIR_ATTEMPT" -ge 3 ] && echo '"done"' || exit 75"#,
                    json!({}),
                ),
            ),
            (
                "bad_input",
                sh("echo 'cannot parse' >&2; exit 65", json!({})),
            ),
            (
                "hang",
                sh(
                    "sleep 30",
                    json!({"timeout": "300ms", "kill_grace": "100ms", "max_attempts": 1}),
                ),
            ),
        ])),
        workers: 1,
        worker_concurrency: 1,
        api_nodes: 1,
        ..StackOptions::on(store)
    })
    .await;
    // One slot: the hung attempt must give it back for the next task to run.
    let hung = submit(&stack, json!({"type": "hang", "input": {}})).await;
    let echo = submit(&stack, json!({"type": "echo", "input": {"x": 1}})).await;
    let done = stack.wait_task(&hung).await;
    assert_eq!(done["status"], "dead", "{done}");
    assert_eq!(done["error"], "timed out after 300ms", "{done}");
    let done = stack.wait_task(&echo).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"], json!({"in": {"x": 1}, "attempt": 1}));

    let temp = submit(&stack, json!({"type": "tempfail", "input": {}})).await;
    let done = stack.wait_task(&temp).await;
    assert_eq!(
        (done["status"].as_str(), done["attempts"].as_i64()),
        (Some("succeeded"), Some(3)),
        "{done}"
    );
    assert_eq!(done["result"], "done");

    let bad = submit(&stack, json!({"type": "bad_input", "input": {}})).await;
    let done = stack.wait_task(&bad).await;
    assert_eq!(done["status"], "dead", "{done}");
    assert_eq!(done["attempts"], 1);
    assert!(
        done["error"].as_str().unwrap().contains("cannot parse"),
        "{done}"
    );
    stack.stop().await;
}

async fn submissions_are_checked_against_their_type(store: StoreKind) {
    let stack = Stack::start(StackOptions {
        task_types: Some(types(&[
            (
                "resize",
                json!({
                    "handler": "external", "timeout": "2m", "queue": "images", "priority": 5,
                    "input_schema": {"type": "object", "required": ["width"],
                                      "properties": {"width": {"type": "integer", "minimum": 1}}},
                }),
            ),
            (
                "notify",
                json!({"handler": "http", "url": "https://user:pw@hooks.example/in?key=k",
                              "secret": "topsecret", "headers": {"Authorization": "Bearer hdr"}}),
            ),
        ])),
        workers: 0,
        api_nodes: 1,
        ..StackOptions::on(store)
    })
    .await;
    let (status, err) = stack
        .post_json("/tasks", &json!({"type": "resize_image", "input": {}}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "unknown_task_type");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resize, sha256"),
        "{err}"
    );

    let (status, err) = stack
        .post_json("/tasks", &json!({"type": "resize", "input": {"width": 0}}))
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "invalid_input");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("/width"),
        "{err}"
    );
    assert_eq!(
        stack.store.task_counts().await.unwrap().queued,
        0,
        "never queued"
    );

    let (status, err) = stack
        .post_json(
            "/tasks",
            &json!({"type": "resize", "input": {"width": 3}, "timeout": "5m"}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_timeout")),
        "{err}"
    );
    let id = submit(
        &stack,
        json!({"type": "resize", "input": {"width": 3}, "timeout": "30s"}),
    )
    .await;
    let task = stack
        .store
        .task_get(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (task.queue.as_str(), task.priority, task.timeout_ms),
        ("images", 5, Some(30_000))
    );

    let resp = stack
        .http
        .get(stack.url("/task-types"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    for secret in ["topsecret", "hdr", "pw@", "key=k"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let listed: Value = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = listed["task_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"md5") && names.contains(&"notify") && names.contains(&"resize"));
    stack.stop().await;
}

async fn external_workers_pull_under_leases(store: StoreKind) {
    let stack = Stack::start(StackOptions {
        task_types: Some(types(&[
            (
                "py",
                json!({"handler": "external", "max_attempts": 3, "retry_backoff": "10ms:5s"}),
            ),
            (
                "py_short",
                json!({"handler": "external", "timeout": "300ms", "max_attempts": 1}),
            ),
        ])),
        worker_token: Some(WORKER_TOKEN.into()),
        workers: 1,
        api_nodes: 1,
        lease: Some(Duration::from_secs(15)),
        rescue_interval: Some(Duration::from_millis(200)),
        ..StackOptions::on(store)
    })
    .await;
    let post = |path: &str, body: Value, token: Option<&str>| {
        let mut req = stack.http.post(stack.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let claim = json!({"types": ["py"], "max": 5, "wait": "3s", "lease": "1s"});
    let (status, err) = post("/workers/ext-1/claim", claim.clone(), None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (401, Some("missing_token"))
    );
    let (status, _) = post("/workers/ext-1/claim", claim.clone(), Some("wrong")).await;
    assert_eq!(status, 401);

    // The built-in worker never takes a type it has no handler for.
    let first = submit(&stack, json!({"type": "py", "input": {"n": 1}})).await;
    let noop = submit(&stack, json!({"type": "noop", "input": {}})).await;
    assert_eq!(stack.wait_task(&noop).await["status"], "succeeded");
    let t = stack
        .store
        .task_get(first.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.state, weir_core::TaskState::Queued);

    // A long poll sees a task submitted while it waits.
    let waiting = tokio::spawn(post(
        "/workers/ext-1/claim",
        json!({"types": ["py"], "wait": "5s"}),
        Some(WORKER_TOKEN),
    ));
    let (status, got) = waiting.await.unwrap();
    assert_eq!(status, 200, "{got}");
    let task = &got["tasks"][0];
    assert_eq!(task["id"], first.as_str());
    assert_eq!(task["input"], json!({"n": 1}));
    let token = task["lease_token"].as_i64().unwrap();
    let (status, hb) = post(
        &format!("/tasks/{first}/heartbeat"),
        json!({"lease_token": token, "progress": 50}),
        Some(WORKER_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{hb}");
    let (status, _) = post(
        &format!("/tasks/{first}/complete"),
        json!({"lease_token": token, "result": {"ok": true}}),
        Some(WORKER_TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    let done = stack.wait_task(&first).await;
    assert_eq!(
        (done["status"].as_str(), &done["result"]),
        (Some("succeeded"), &json!({"ok": true}))
    );
    assert_eq!(done["worker_id"], "ext-1");

    // A lease that lapses is rescued; the late worker's report is refused.
    let lost = submit(&stack, json!({"type": "py", "input": {"n": 2}})).await;
    let (_, got) = post(
        "/workers/slow-ext/claim",
        json!({"types": ["py"], "wait": "3s", "lease": "1s"}),
        Some(WORKER_TOKEN),
    )
    .await;
    let stale = got["tasks"][0]["lease_token"].as_i64().unwrap();
    let again = poll(Duration::from_secs(20), || async {
        let (_, got) = post(
            "/workers/fast-ext/claim",
            json!({"types": ["py"]}),
            Some(WORKER_TOKEN),
        )
        .await;
        got["tasks"].as_array().and_then(|t| t.first().cloned())
    })
    .await;
    assert_eq!(again["id"], lost.as_str());
    assert_eq!(again["attempt"], 2);
    let (status, err) = post(
        &format!("/tasks/{lost}/complete"),
        json!({"lease_token": stale, "result": "late"}),
        Some(WORKER_TOKEN),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("lease_lost")),
        "{err}"
    );
    let (status, err) = post(
        &format!("/tasks/{lost}/heartbeat"),
        json!({"lease_token": stale}),
        Some(WORKER_TOKEN),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("lease_lost")),
        "{err}"
    );
    let fresh = again["lease_token"].as_i64().unwrap();
    let (status, _) = post(
        &format!("/tasks/{lost}/complete"),
        json!({"lease_token": fresh, "result": "on time"}),
        Some(WORKER_TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    let done = stack.wait_task(&lost).await;
    assert_eq!(
        (done["result"].as_str(), done["worker_id"].as_str()),
        (Some("on time"), Some("fast-ext"))
    );

    // fail: retryable goes back to the queue, permanent is dead at once.
    let failing = submit(&stack, json!({"type": "py", "input": {"n": 3}})).await;
    let (_, got) = post(
        "/workers/ext-1/claim",
        json!({"types": ["py"], "wait": "3s"}),
        Some(WORKER_TOKEN),
    )
    .await;
    let token = got["tasks"][0]["lease_token"].as_i64().unwrap();
    let (status, ans) = post(
        &format!("/tasks/{failing}/fail"),
        json!({"lease_token": token, "error": "db away", "retry_after": "2s"}),
        Some(WORKER_TOKEN),
    )
    .await;
    assert_eq!(
        (status, ans["status"].as_str()),
        (200, Some("queued")),
        "{ans}"
    );
    let t = stack
        .store
        .task_get(failing.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let wait = t.run_at - chrono::Utc::now();
    assert!(
        wait > chrono::Duration::milliseconds(1500),
        "Retry-After honoured: {wait}"
    );
    let (_, got) = post(
        "/workers/ext-1/claim",
        json!({"types": ["py"], "wait": "3s"}),
        Some(WORKER_TOKEN),
    )
    .await;
    let token = got["tasks"][0]["lease_token"].as_i64().unwrap();
    let (status, ans) = post(
        &format!("/tasks/{failing}/fail"),
        json!({"lease_token": token, "error": "bad row", "retry": false}),
        Some(WORKER_TOKEN),
    )
    .await;
    assert_eq!(
        (status, ans["status"].as_str()),
        (200, Some("dead")),
        "{ans}"
    );
    let done = stack.wait_task(&failing).await;
    assert_eq!(
        (done["attempts"].as_i64(), done["error"].as_str()),
        (Some(2), Some("bad row"))
    );

    // An attempt past its timeout is failed at its next heartbeat.
    let short = submit(&stack, json!({"type": "py_short", "input": {}})).await;
    let (_, got) = post(
        "/workers/ext-1/claim",
        json!({"types": ["py_short"], "wait": "3s"}),
        Some(WORKER_TOKEN),
    )
    .await;
    assert_eq!(got["tasks"][0]["timeout_ms"], 300);
    let token = got["tasks"][0]["lease_token"].as_i64().unwrap();
    let refused = poll(Duration::from_secs(10), || async {
        let (status, err) = post(
            &format!("/tasks/{short}/heartbeat"),
            json!({"lease_token": token}),
            Some(WORKER_TOKEN),
        )
        .await;
        (status == 409).then_some(err)
    })
    .await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{refused}"
    );
    let done = stack.wait_task(&short).await;
    assert_eq!(
        (done["status"].as_str(), done["error"].as_str()),
        (Some("dead"), Some("timed out after 300ms"))
    );

    // External workers show in the registry with their types.
    let (_, workers) = stack.get_json("/workers").await;
    let ext = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == "ext-1")
        .cloned()
        .expect("ext-1 listed");
    assert_eq!(
        ext["task_types"],
        json!(["py_short"]),
        "the types of its last claim"
    );
    let builtin: HashMap<String, Value> = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["id"].as_str().unwrap().to_string(),
                w["task_types"].clone(),
            )
        })
        .collect();
    assert!(!builtin["worker-1"]
        .as_array()
        .unwrap()
        .contains(&json!("py")));
    stack.stop().await;
}

for_each_store!(
    http_delivery_outcomes,
    command_outcomes_and_a_hung_attempt_frees_its_slot,
    submissions_are_checked_against_their_type,
    external_workers_pull_under_leases,
);
