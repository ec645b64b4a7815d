//! Batches through the lb: an external worker's running step adds steps to
//! its own workflow (`POST /workflows/{id}/steps`, fenced by its lease), the
//! step after it waits for all of them, and every refusal names its cause.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{poll, Stack, StackOptions, StoreKind};

const WORKER_TOKEN: &str = "batch-test-worker-token";

async fn an_external_step_adds_a_batch_and_the_report_waits_for_it(store: StoreKind) {
    let types = crate::task_types::types(&[("split", json!({"handler": "external"}))]);
    let stack = Stack::start(StackOptions {
        task_types: Some(types),
        worker_token: Some(WORKER_TOKEN.into()),
        max_workflow_steps: 30,
        ..StackOptions::on(store)
    })
    .await;
    let worker = |path: String, body: Value| {
        let stack = &stack;
        async move {
            let (status, replayed, answer) = stack.post_as_worker(WORKER_TOKEN, &path, &body).await;
            (status, answer, replayed)
        }
    };
    let (status, accepted) = stack
        .post_json(
            "/workflows",
            &json!({"name": "batch", "steps": [
                {"id": "split", "type": "split", "input": {}},
                {"id": "report", "type": "noop", "input": {}, "depends_on": ["split"],
                 "with_parent_results": true}
            ]}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["workflow_id"].as_str().unwrap().to_string();
    let split = accepted["steps"]["split"].as_str().unwrap().to_string();
    let (status, got, _) = worker(
        "/workers/ext/claim".into(),
        json!({"types": ["split"], "wait": "5s"}),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    let claimed = &got["tasks"][0];
    assert_eq!(claimed["workflow_id"], id.as_str(), "{claimed}");
    assert_eq!(claimed["step_id"], "split");
    let token = claimed["lease_token"].as_i64().unwrap();
    let path = format!("/workflows/{id}/steps");
    let hashes: Vec<Value> = (0..20)
        .map(|i| json!({"id": format!("hash-{i}"), "type": "md5", "input": {"string": i.to_string()}}))
        .collect();
    let body = json!({"task_id": split, "lease_token": token, "steps": hashes});

    // Refusals, each naming its cause; none stores anything.
    let refused = [
        (
            json!({"task_id": split, "lease_token": token + 1, "steps": hashes}),
            409,
            "lease_lost",
        ),
        (
            json!({"task_id": id, "lease_token": token, "steps": hashes}),
            404,
            "step_not_found",
        ),
        (
            json!({"task_id": split, "lease_token": token, "steps": [
            {"id": "x", "type": "md5", "input": {"string": "x"}, "depends_on": ["y"]},
            {"id": "y", "type": "md5", "input": {"string": "y"}, "depends_on": ["x"]}]}),
            400,
            "workflow_cycle",
        ),
        (
            json!({"task_id": split, "lease_token": token, "steps": [
            {"id": "split", "type": "md5", "input": {"string": "x"}}]}),
            409,
            "step_exists",
        ),
        (
            json!({"task_id": split, "lease_token": token, "steps": [
            {"id": "z", "type": "nope", "input": {}}]}),
            400,
            "unknown_task_type",
        ),
        (
            json!({"task_id": split, "lease_token": token, "steps":
            (0..29).map(|i| json!({"id": format!("n{i}"), "type": "noop", "input": {}}))
                .collect::<Vec<_>>()}),
            413,
            "too_many_steps",
        ),
    ];
    for (bad, want_status, want_code) in refused {
        let (status, err, _) = worker(path.clone(), bad).await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{err}"
        );
    }
    let (_, w) = stack.get_json(&format!("/workflows/{id}")).await;
    assert_eq!(w["steps"].as_array().unwrap().len(), 2, "{w}");

    let (status, added, replayed) = worker(path.clone(), body.clone()).await;
    assert_eq!((status, replayed), (202, false), "{added}");
    assert_eq!(added["steps"].as_object().unwrap().len(), 20);
    // The same call again (a retried attempt): the same tasks, nothing new.
    let (status, again, replayed) = worker(path.clone(), body).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again["steps"], added["steps"]);
    // The added steps are tasks of the workflow like the others.
    let hash0 = added["steps"]["hash-0"].as_str().unwrap();
    let (_, task) = stack.get_json(&format!("/tasks/{hash0}")).await;
    assert_eq!(
        (task["workflow_id"].as_str(), task["step_id"].as_str()),
        (Some(id.as_str()), Some("hash-0"))
    );

    // The adder ends; the report waits for the twenty hashes.
    let (status, ..) = worker(
        format!("/tasks/{split}/complete"),
        json!({"lease_token": token, "result": {"split": 20}}),
    )
    .await;
    assert_eq!(status, 200);
    let path = format!("/workflows/{id}");
    let w = poll(Duration::from_secs(30), || async {
        let (_, w) = stack.get_json(&path).await;
        (w["status"] != "running").then_some(w)
    })
    .await;
    assert_eq!(w["status"], "succeeded", "{w}");
    assert_eq!(w["steps"].as_array().unwrap().len(), 22);
    let report = accepted["steps"]["report"].as_str().unwrap();
    let (_, report) = stack.get_json(&format!("/tasks/{report}")).await;
    let parents = report["input"]["parents"].as_object().unwrap();
    assert_eq!(parents.len(), 21, "split and every hash: {parents:?}");
    let started = chrono::DateTime::parse_from_rfc3339(report["started_at"].as_str().unwrap());
    for (step, task) in added["steps"].as_object().unwrap() {
        let (_, hash) = stack
            .get_json(&format!("/tasks/{}", task.as_str().unwrap()))
            .await;
        assert_eq!(parents[step], hash["result"]);
        let done = chrono::DateTime::parse_from_rfc3339(hash["completed_at"].as_str().unwrap());
        assert!(
            started.unwrap() >= done.unwrap(),
            "{step} ended after the report began"
        );
    }
    // Once the adder has ended, its lease no longer adds anything.
    let (status, err, _) = worker(
        format!("/workflows/{id}/steps"),
        json!({"task_id": split, "lease_token": token, "steps": [
            {"id": "late", "type": "md5", "input": {"string": "late"}}]}),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("lease_lost"))
    );
    stack.stop().await;
}

crate::for_each_store!(an_external_step_adds_a_batch_and_the_report_waits_for_it,);
