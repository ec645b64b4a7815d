//! Workflows end to end through the lb: a DAG runs in its order with each
//! step's parents' results, bad graphs are refused before anything is
//! stored, and a dead step's dependents come back when it is retried.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{poll, Stack, StackOptions, StoreKind};

const WORKER_TOKEN: &str = "workflow-test-worker-token";

/// Polls `GET /workflows/{id}` until `done` holds for it.
async fn wait_workflow(stack: &Stack, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/workflows/{id}");
    poll(Duration::from_secs(30), || async {
        let (status, w) = stack.get_json(&path).await;
        assert_eq!(status, 200, "{w}");
        done(&w).then_some(w)
    })
    .await
}

fn step<'a>(w: &'a Value, id: &str) -> &'a Value {
    w["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {w}"))
}

async fn a_dag_runs_in_order_and_the_join_gets_its_parents_results(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    let (status, accepted) = stack
        .post_json(
            "/workflows",
            &json!({
                "name": "report",
                "steps": [
                    {"id": "fetch", "type": "md5", "input": {"string": "a"}},
                    {"id": "left", "type": "md5", "input": {"string": "b"}, "depends_on": ["fetch"]},
                    {"id": "right", "type": "sha256", "input": {"string": "c"}, "depends_on": ["fetch"],
                     "priority": 5, "max_attempts": 2},
                    {"id": "join", "type": "noop", "input": {}, "depends_on": ["left", "right"],
                     "with_parent_results": true}
                ]
            }),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "running");
    let id = accepted["workflow_id"].as_str().unwrap().to_string();
    let steps = accepted["steps"].as_object().unwrap();
    assert_eq!(steps.len(), 4);
    // One held request answers once the workflow has finished.
    let (status, w) = stack.get_json(&format!("/workflows/{id}?wait=30s")).await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["status"], "succeeded", "{w}");
    // Each step says when it ran: the join after both its parents.
    let at = |s: &str, field: &str| {
        chrono::DateTime::parse_from_rfc3339(step(&w, s)[field].as_str().unwrap()).unwrap()
    };
    for parent in ["left", "right"] {
        assert!(
            at("join", "started_at") >= at(parent, "completed_at"),
            "{w}"
        );
    }
    assert_eq!(w["name"], "report");
    assert!(w["finished_at"].is_string());
    for s in ["fetch", "left", "right", "join"] {
        assert_eq!(step(&w, s)["status"], "succeeded", "{w}");
        assert_eq!(step(&w, s)["task_id"], steps[s], "{w}");
    }
    assert_eq!(step(&w, "join")["depends_on"], json!(["left", "right"]));
    // Each step started only after its parents finished.
    let stack_ref = &stack;
    let task = |name: &str| {
        let id = steps[name].as_str().unwrap().to_string();
        async move { stack_ref.get_json(&format!("/tasks/{id}")).await.1 }
    };
    let (fetch, left, right, join) = (
        task("fetch").await,
        task("left").await,
        task("right").await,
        task("join").await,
    );
    let at = |t: &Value, field: &str| {
        chrono::DateTime::parse_from_rfc3339(t[field].as_str().unwrap()).unwrap()
    };
    assert!(at(&left, "started_at") >= at(&fetch, "completed_at"));
    assert!(at(&right, "started_at") >= at(&fetch, "completed_at"));
    assert!(at(&join, "started_at") >= at(&left, "completed_at"));
    assert!(at(&join, "started_at") >= at(&right, "completed_at"));
    // Step options hold as for tasks; the join saw both parents' results.
    assert_eq!(
        (right["priority"].as_i64(), right["max_attempts"].as_i64()),
        (Some(5), Some(2))
    );
    assert_eq!(join["input"]["parents"]["left"], left["result"], "{join}");
    assert_eq!(join["input"]["parents"]["right"], right["result"], "{join}");
    // Listed, newest first, filterable by status and name.
    let (status, page) = stack
        .get_json("/workflows?status=succeeded&name=report")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["workflows"][0]["id"], id.as_str());
    let (_, none) = stack.get_json("/workflows?status=failed").await;
    assert_eq!(none["workflows"], json!([]));
    // Counted for `weir status` and in the metrics.
    let (_, stats) = stack.get_json("/tasks/stats").await;
    assert_eq!(stats["workflows"], json!({"succeeded": 1}), "{stats}");
    assert_eq!(stats["waiting"], 0);
    let metrics = stack
        .http
        .get(stack.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The recorder is the test process's, shared by every stack in it: the
    // series must be there; its value is whichever stack scraped last.
    for status in ["running", "succeeded", "failed", "cancelled"] {
        let series = format!("weir_workflows_total{{status=\"{status}\"}} ");
        assert!(metrics.lines().any(|l| l.starts_with(&series)), "{series}");
    }
    // The wait from a step's last parent ending to its start: left, right
    // and the join each waited once.
    let waits = metrics
        .lines()
        .find_map(|l| l.strip_prefix("weir_workflow_step_start_wait_seconds_count "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(waits >= Some(3), "{waits:?}");
    stack.stop().await;
}

async fn bad_workflows_are_refused_naming_the_fault_and_nothing_is_stored(store: StoreKind) {
    let stack = Stack::start(StackOptions {
        max_workflow_steps: 5,
        ..StackOptions::on(store)
    })
    .await;
    let refused = |body: Value| {
        let stack = &stack;
        async move {
            let (status, err) = stack.post_json("/workflows", &body).await;
            (
                status,
                err["error"]["code"].as_str().unwrap_or("").to_string(),
                err,
            )
        }
    };
    let md5 = |id: &str, deps: &[&str]| json!({"id": id, "type": "md5", "input": {"string": id}, "depends_on": deps});
    let (status, code, err) = refused(json!({"steps": [
        md5("start", &[]), md5("a", &["start", "c"]), md5("b", &["a"]), md5("c", &["b"])
    ]}))
    .await;
    assert_eq!((status, code.as_str()), (400, "workflow_cycle"), "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        ["\"a\"", "\"b\"", "\"c\""]
            .iter()
            .any(|s| message.contains(s)),
        "{message}"
    );
    let (status, code, err) = refused(json!({"steps": [md5("a", &["ghost"])]})).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "unknown_dependency"),
        "{err}"
    );
    assert!(err["error"]["message"].as_str().unwrap().contains("ghost"));
    let (status, code, err) = refused(json!({"steps": [md5("a", &[]), md5("a", &[])]})).await;
    assert_eq!((status, code.as_str()), (400, "duplicate_step"), "{err}");
    let (status, code, err) = refused(json!({"steps": [
        md5("a", &[]), {"id": "b", "type": "nope", "input": {}, "depends_on": ["a"]}
    ]}))
    .await;
    assert_eq!((status, code.as_str()), (400, "unknown_task_type"), "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("\"b\""),
        "{err}"
    );
    let (status, code, err) = refused(json!({"steps": [
        {"id": "a", "type": "md5", "input": {"wrong": 1}}
    ]}))
    .await;
    assert_eq!((status, code.as_str()), (400, "invalid_input"), "{err}");
    let (status, code, err) = refused(json!({"steps": [
        {"id": "a", "type": "md5", "input": {"string": "x"}, "queue": "bad queue!"}
    ]}))
    .await;
    assert_eq!((status, code.as_str()), (400, "invalid_queue"), "{err}");
    let six: Vec<Value> = (0..6).map(|i| md5(&format!("s{i}"), &[])).collect();
    let (status, code, err) = refused(json!({ "steps": six })).await;
    assert_eq!((status, code.as_str()), (413, "too_many_steps"), "{err}");
    let (status, code, err) = refused(json!({"steps": [md5("a", &[])], "extra": 1})).await;
    assert_eq!(status, 400, "{err}");
    assert!(!code.is_empty());
    let (status, code, _) = refused(json!({"steps": []})).await;
    assert_eq!((status, code.as_str()), (400, "empty_workflow"));
    // Nothing of any refused workflow was stored.
    let (_, page) = stack.get_json("/workflows").await;
    assert_eq!(page["workflows"], json!([]));
    let (_, tasks) = stack.get_json("/tasks").await;
    assert_eq!(tasks["tasks"], json!([]), "{tasks}");
    let (status, err) = stack.get_json("/workflows/not-an-id").await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("workflow_not_found"))
    );
    stack.stop().await;
}

async fn a_dead_step_cancels_its_dependents_until_it_is_retried(store: StoreKind) {
    let types =
        crate::task_types::types(&[("charge", json!({"handler": "external", "max_attempts": 1}))]);
    let stack = Stack::start(StackOptions {
        task_types: Some(types),
        worker_token: Some(WORKER_TOKEN.into()),
        ..StackOptions::on(store)
    })
    .await;
    let worker = |path: String, body: Value| {
        let stack = &stack;
        async move {
            let (status, _, answer) = stack.post_as_worker(WORKER_TOKEN, &path, &body).await;
            (status, answer)
        }
    };
    let (status, accepted) = stack
        .post_json(
            "/workflows",
            &json!({"steps": [
                {"id": "charge", "type": "charge", "input": {"cents": 100}},
                {"id": "email", "type": "noop", "input": {}, "depends_on": ["charge"]},
                {"id": "log", "type": "noop", "input": {}, "depends_on": ["email"]}
            ]}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["workflow_id"].as_str().unwrap().to_string();
    let charge = accepted["steps"]["charge"].as_str().unwrap().to_string();
    // A held GET on a workflow that cannot finish yet answers at its end;
    // a wait that is no duration is refused.
    let held = std::time::Instant::now();
    let (status, running) = stack.get_json(&format!("/workflows/{id}?wait=300ms")).await;
    assert_eq!((status, running["status"].as_str()), (200, Some("running")));
    assert!(held.elapsed() >= Duration::from_millis(300));
    let (status, bad) = stack.get_json(&format!("/workflows/{id}?wait=soon")).await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );
    let claim = json!({"types": ["charge"], "wait": "5s"});
    let (status, got) = worker("/workers/ext/claim".into(), claim.clone()).await;
    assert_eq!(status, 200, "{got}");
    let token = got["tasks"][0]["lease_token"].as_i64().unwrap();
    let (status, _) = worker(
        format!("/tasks/{charge}/fail"),
        json!({"lease_token": token, "error": "card declined", "retry": false}),
    )
    .await;
    assert_eq!(status, 200);
    let failed = wait_workflow(&stack, &id, |w| w["status"] != "running").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(step(&failed, "charge")["status"], "dead");
    for s in ["email", "log"] {
        assert_eq!(step(&failed, s)["status"], "cancelled", "{failed}");
    }
    assert!(step(&failed, "email")["error"]
        .as_str()
        .unwrap()
        .contains("charge"));

    // The recovery Celery's chords lack: retry the dead step.
    let (status, retried) = stack
        .post_json(&format!("/tasks/{charge}/retry"), &json!({}))
        .await;
    assert_eq!(status, 200, "{retried}");
    let (_, back) = stack.get_json(&format!("/workflows/{id}")).await;
    assert_eq!(back["status"], "running", "{back}");
    for s in ["email", "log"] {
        assert_eq!(step(&back, s)["status"], "waiting", "{back}");
    }
    let (status, got) = worker("/workers/ext/claim".into(), claim).await;
    assert_eq!(status, 200, "{got}");
    let token = got["tasks"][0]["lease_token"].as_i64().unwrap();
    let (status, _) = worker(
        format!("/tasks/{charge}/complete"),
        json!({"lease_token": token, "result": {"charged": true}}),
    )
    .await;
    assert_eq!(status, 200);
    let done = wait_workflow(&stack, &id, |w| w["status"] != "running").await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // Cancelling: waiting and queued steps are cancelled at once.
    let (_, second) = stack
        .post_json(
            "/workflows",
            &json!({"steps": [
                {"id": "charge", "type": "charge", "input": {"cents": 5}},
                {"id": "email", "type": "noop", "input": {}, "depends_on": ["charge"]}
            ]}),
        )
        .await;
    let second = second["workflow_id"].as_str().unwrap().to_string();
    let (status, cancelled) = stack
        .post_json(&format!("/workflows/{second}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    for s in ["charge", "email"] {
        assert_eq!(step(&cancelled, s)["status"], "cancelled", "{cancelled}");
    }
    stack.stop().await;
}

async fn an_idempotency_key_returns_the_same_workflow_and_refuses_another(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    let body = json!({"name": "once", "steps": [
        {"id": "a", "type": "noop", "input": {}},
        {"id": "b", "type": "noop", "input": {}, "depends_on": ["a"]}
    ]});
    let send = |body: Value| {
        let req = stack
            .http
            .post(stack.url("/workflows"))
            .header("idempotency-key", "nightly-2026-12-05")
            .json(&body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let replayed = resp.headers().get("idempotent-replayed").is_some();
            (status, replayed, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, replayed, first) = send(body.clone()).await;
    assert_eq!((status, replayed), (202, false), "{first}");
    let (status, replayed, again) = send(body.clone()).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again["workflow_id"], first["workflow_id"]);
    assert_eq!(again["steps"], first["steps"]);
    let mut other = body;
    other["steps"][1]["input"] = json!({"changed": true});
    let (status, _, err) = send(other).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{err}"
    );
    let (_, page) = stack.get_json("/workflows").await;
    assert_eq!(page["workflows"].as_array().unwrap().len(), 1, "{page}");
    stack.stop().await;
}

async fn a_workflow_past_a_tasks_body_limit_is_taken_up_to_its_step_limit(store: StoreKind) {
    let stack = Stack::start(StackOptions {
        max_body_bytes: 64 * 1024,
        max_workflow_steps: 200,
        ..StackOptions::on(store)
    })
    .await;
    // 200 steps of 600 bytes: twice a task's 64 KiB, within 200 × 1 KiB.
    let pad = "x".repeat(600);
    let steps: Vec<Value> = (0..200)
        .map(|i| json!({"id": format!("s{i}"), "type": "noop", "input": {"pad": pad}}))
        .collect();
    let (status, accepted) = stack
        .post_json("/workflows", &json!({ "steps": steps }))
        .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["workflow_id"].as_str().unwrap().to_string();
    let done = wait_workflow(&stack, &id, |w| w["status"] != "running").await;
    assert_eq!(done["status"], "succeeded");
    // Past the step limit's room, the body is refused for its size.
    let big: Vec<Value> = (0..200)
        .map(|i| json!({"id": format!("s{i}"), "type": "noop", "input": {"pad": "y".repeat(2000)}}))
        .collect();
    let (status, err) = stack
        .post_json("/workflows", &json!({ "steps": big }))
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    assert!(
        err["error"]["message"].as_str().unwrap().contains("204800"),
        "{err}"
    );
    stack.stop().await;
}

crate::for_each_store!(
    a_workflow_past_a_tasks_body_limit_is_taken_up_to_its_step_limit,
    an_idempotency_key_returns_the_same_workflow_and_refuses_another,
    a_dag_runs_in_order_and_the_join_gets_its_parents_results,
    bad_workflows_are_refused_naming_the_fault_and_nothing_is_stored,
    a_dead_step_cancels_its_dependents_until_it_is_retried,
);
