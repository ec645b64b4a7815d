//! Bulk actions and the audit log through the lb: 10,000 dead tasks retried
//! with one request while workers run — each succeeds once, none twice —,
//! bulk cancel and delete over a filter and over ids, refusals, and the
//! audit log naming who did each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::support::{poll, Stack, StackOptions, StoreKind};

const WORKER_TOKEN: &str = "bulk-worker-token";
const DEAD: usize = 10_000;

/// Claims `partner` tasks as an external worker and ends each with `end`
/// (`fail`: dead at once; `complete`), until `total` ended or `stop`.
async fn external_worker(
    stack: &Stack,
    worker: String,
    end: &'static str,
    ended: Arc<Mutex<HashMap<String, u32>>>,
    total: usize,
) {
    let claim_url = stack.url(&format!("/workers/{worker}/claim"));
    loop {
        if ended
            .lock()
            .unwrap()
            .values()
            .map(|n| *n as usize)
            .sum::<usize>()
            >= total
        {
            return;
        }
        let answer: Value = stack
            .http
            .post(&claim_url)
            .bearer_auth(WORKER_TOKEN)
            .json(&json!({"types": ["partner"], "max": 100, "wait": "1s"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let tasks = answer["tasks"].as_array().cloned().unwrap_or_default();
        stream::iter(tasks)
            .for_each_concurrent(8, |task| {
                let ended = ended.clone();
                async move {
                    let id = task["id"].as_str().unwrap().to_string();
                    let body = match end {
                        "fail" => json!({"lease_token": task["lease_token"], "error": "partner API down", "retry": false}),
                        _ => json!({"lease_token": task["lease_token"], "result": {"ok": true}}),
                    };
                    let resp = stack
                        .http
                        .post(stack.url(&format!("/tasks/{id}/{end}")))
                        .bearer_auth(WORKER_TOKEN)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 200, "{end} {id}: {}", resp.text().await.unwrap());
                    *ended.lock().unwrap().entry(id).or_default() += 1;
                }
            })
            .await;
    }
}

async fn wait_bulk(stack: &Stack, id: &str) -> Value {
    poll(Duration::from_secs(120), || async {
        let (_, job) = stack.get_json(&format!("/tasks/bulk/{id}")).await;
        (job["status"] == "done").then_some(job)
    })
    .await
}

async fn ten_thousand_dead_tasks_retried_with_one_request_each_succeed_once(store: StoreKind) {
    let types = crate::task_types::types(&[("partner", json!({"handler": "external"}))]);
    let stack = Stack::start(StackOptions {
        task_types: Some(types),
        worker_token: Some(WORKER_TOKEN.into()),
        db_max_connections: 16,
        ..StackOptions::on(store)
    })
    .await;
    stream::iter(0..DEAD)
        .for_each_concurrent(32, |i| {
            let stack = &stack;
            async move {
                let task = json!({"type": "partner", "input": {"n": i}, "max_attempts": 1});
                // A client retries a 503 (shed by the lb's overload
                // protection, or a busy database, on a busy machine) under
                // its Idempotency-Key, so a retried submission is queued
                // once; anything else is final.
                let (status, body) = poll(Duration::from_secs(60), || async {
                    let resp = stack
                        .http
                        .post(stack.url("/tasks"))
                        .header("idempotency-key", format!("partner-{i}"))
                        .json(&task)
                        .send()
                        .await
                        .ok()?;
                    let status = resp.status().as_u16();
                    let body: Value = resp.json().await.ok()?;
                    (status != 503).then_some((status, body))
                })
                .await;
                // 200: a retry found the submission its 503 had stored.
                assert!(matches!(status, 202 | 200), "{status} {body}");
            }
        })
        .await;
    // The partner API is down: every attempt fails, each task is dead.
    let failed = Arc::new(Mutex::new(HashMap::new()));
    let fail_loops =
        (0..2).map(|w| external_worker(&stack, format!("f{w}"), "fail", failed.clone(), DEAD));
    futures_util::future::join_all(fail_loops).await;
    let (_, stats) = stack.get_json("/tasks/stats").await;
    assert_eq!(stats["dead"], DEAD as i64, "{stats}");

    // It is back: workers run while one request retries them all.
    let completed = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let workers =
        futures_util::future::join_all((0..3).map(|w| {
            external_worker(&stack, format!("c{w}"), "complete", completed.clone(), DEAD)
        }));
    let (status, started) = stack
        .post_json(
            "/tasks/bulk",
            &json!({"action": "retry", "filter": {"state": "dead", "type": "partner"}}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let bulk_id = started["bulk_id"].as_str().unwrap().to_string();
    assert_eq!(started["status"], "running");
    let (done, ()) = tokio::join!(wait_bulk(&stack, &bulk_id), async {
        tokio::time::timeout(Duration::from_secs(180), workers)
            .await
            .expect("the retried tasks did not all complete");
    });
    assert_eq!(
        (
            done["processed"].as_i64(),
            done["changed"].as_i64(),
            done["skipped"].as_i64()
        ),
        (Some(DEAD as i64), Some(DEAD as i64), Some(0)),
        "{done}"
    );
    let completed = completed.lock().unwrap().clone();
    assert_eq!(completed.len(), DEAD);
    assert!(
        completed.values().all(|n| *n == 1),
        "a task completed twice"
    );
    let (_, stats) = stack.get_json("/tasks/stats").await;
    assert_eq!(
        (stats["dead"].as_i64(), stats["succeeded"].as_i64()),
        (Some(0), Some(DEAD as i64)),
        "{stats}"
    );
    // The audit log names it.
    let (status, audit) = stack.get_json("/audit?action=tasks.bulk_retry").await;
    assert_eq!(status, 200, "{audit}");
    let entry = &audit["entries"][0];
    assert_eq!(entry["target"], bulk_id.as_str(), "{audit}");
    assert_eq!(entry["actor"], "admin");
    assert_eq!(
        entry["detail"]["filter"],
        json!({"state": "dead", "type": "partner"})
    );
    stack.stop().await;
}

async fn bulk_cancel_and_delete_and_their_refusals(store: StoreKind) {
    let stack = Stack::start(StackOptions {
        workers: 0,
        ..StackOptions::on(store)
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, t) = stack
            .post_json(
                "/tasks",
                &json!({"type": "md5", "input": {"string": format!("c{i}")}, "queue": "reports"}),
            )
            .await;
        ids.push(t["task_id"].as_str().unwrap().to_string());
    }
    let (status, started) = stack
        .post_json(
            "/tasks/bulk",
            &json!({"action": "cancel", "filter": {"queue": "reports"}}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let done = wait_bulk(&stack, started["bulk_id"].as_str().unwrap()).await;
    assert_eq!(done["changed"], 5, "{done}");
    let (status, started) = stack
        .post_json(
            "/tasks/bulk",
            &json!({"action": "delete", "ids": &ids[..2]}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["ids"], 2);
    let done = wait_bulk(&stack, started["bulk_id"].as_str().unwrap()).await;
    assert_eq!(done["changed"], 2, "{done}");
    let (status, _) = stack.get_json(&format!("/tasks/{}", ids[0])).await;
    assert_eq!(status, 404);
    let (_, left) = stack.get_json("/tasks?queue=reports&state=cancelled").await;
    assert_eq!(left["tasks"].as_array().unwrap().len(), 3, "{left}");

    for (bad, code) in [
        (json!({"action": "retry"}), "invalid_bulk"),
        (json!({"action": "retry", "ids": [], }), "invalid_bulk"),
        (json!({"action": "retry", "ids": ["nope"]}), "invalid_bulk"),
        (
            json!({"action": "retry", "ids": vec![&ids[2]; 10_001]}),
            "invalid_bulk",
        ),
        (
            json!({"action": "retry", "ids": [&ids[2]], "filter": {}}),
            "invalid_bulk",
        ),
        (json!({"action": "explode", "filter": {}}), "invalid_input"),
        (
            json!({"action": "retry", "filter": {"colour": "red"}}),
            "invalid_input",
        ),
        (
            json!({"action": "retry", "filter": {"error": ""}}),
            "invalid_filter",
        ),
    ] {
        let (status, body) = stack.post_json("/tasks/bulk", &bad).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert_eq!(body["error"]["code"], code, "{bad} → {body}");
    }
    let (status, body) = stack
        .get_json(&format!("/tasks/bulk/{}", weir_core::TaskId::new()))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("bulk_not_found"))
    );
    let (_, listed) = stack.get_json("/tasks/bulk").await;
    assert_eq!(
        listed["bulk_actions"].as_array().unwrap().len(),
        2,
        "{listed}"
    );
    stack.stop().await;
}

/// Each manage action is in the audit log with the key's name, its tenant
/// and the client's address — and no key or token anywhere in it.
async fn the_audit_log_names_who_did_what_and_holds_no_secret(store: StoreKind) {
    use weir_api::api_keys::{ApiKeys, Scope};
    let (ops, a) = ApiKeys::generate(
        "ops-oncall",
        &[Scope::Manage, Scope::Read, Scope::Submit],
        None,
    );
    let (reader, b) = ApiKeys::generate("dashboard-viewer", &[Scope::Read], None);
    let (tenant_ops, c) = ApiKeys::generate(
        "acme-ops",
        &[Scope::Manage, Scope::Read, Scope::Submit],
        Some("acme"),
    );
    let stack = Stack::start(StackOptions {
        api_keys: Some(ApiKeys::parse(&format!("{a}\n{b}\n{c}")).unwrap()),
        worker_token: Some(WORKER_TOKEN.into()),
        workers: 0,
        ..StackOptions::on(store)
    })
    .await;
    let send = |method: reqwest::Method, path: &str, key: &str, body: Option<Value>| {
        let mut req = stack.http.request(method, stack.url(path)).bearer_auth(key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    use reqwest::Method;
    let (status, task) = send(
        Method::POST,
        "/tasks",
        &tenant_ops,
        Some(json!({"type": "md5", "input": {"string": "audited"}})),
    )
    .await;
    assert_eq!(status, 202, "{task}");
    let task_id = task["task_id"].as_str().unwrap().to_string();
    let (status, _) = send(
        Method::DELETE,
        &format!("/tasks/{task_id}"),
        &tenant_ops,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(Method::POST, "/queues/emails/pause", &ops, None).await;
    assert_eq!(status, 200);
    let (status, _) = send(
        Method::PUT,
        "/queues/reports",
        &ops,
        Some(json!({"concurrency": 3})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, bulk) = send(
        Method::POST,
        "/tasks/bulk",
        &tenant_ops,
        Some(json!({"action": "delete", "filter": {"state": "cancelled"}})),
    )
    .await;
    assert_eq!(status, 202, "{bulk}");
    // Reading it takes the manage scope.
    let (status, refused) = send(Method::GET, "/audit", &reader, None).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (403, Some("missing_scope"))
    );
    let (status, audit) = send(Method::GET, "/audit", &ops, None).await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["target"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let bulk_id = bulk["bulk_id"].as_str().unwrap();
    assert_eq!(
        seen,
        vec![
            ("tasks.bulk_delete", "acme-ops", bulk_id),
            ("queue.set_limits", "ops-oncall", "reports"),
            ("queue.pause", "ops-oncall", "emails"),
            ("task.cancel", "acme-ops", task_id.as_str()),
        ]
    );
    assert_eq!(entries[0]["tenant"], "acme");
    assert_eq!(
        entries[0]["detail"]["filter"],
        json!({"state": "cancelled", "tenant": "acme"})
    );
    assert_eq!(entries[1]["detail"]["concurrency"], 3);
    assert!(
        entries.iter().all(|e| e["client_ip"] == "127.0.0.1"),
        "{audit}"
    );
    let text = audit.to_string();
    for secret in [&ops, &reader, &tenant_ops, &WORKER_TOKEN.to_string()] {
        assert!(
            !text.contains(secret.as_str()),
            "a secret in the audit log: {text}"
        );
    }
    stack.stop().await;
}

crate::for_each_store!(
    ten_thousand_dead_tasks_retried_with_one_request_each_succeed_once,
    bulk_cancel_and_delete_and_their_refusals,
    the_audit_log_names_who_did_what_and_holds_no_secret,
);

/// `weir tasks` over the HTTP API: list with filters (table and JSON), show
/// one, retry by filter (followed until done), cancel by ids; a bulk action
/// over nothing named asks for `--all`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tasks_command_lists_shows_and_acts_in_bulk() {
    let types = crate::task_types::types(&[("partner", json!({"handler": "external"}))]);
    let stack = Stack::start(StackOptions {
        task_types: Some(types),
        worker_token: Some(WORKER_TOKEN.into()),
        workers: 0,
        ..StackOptions::on(StoreKind::Sqlite)
    })
    .await;
    for i in 0..3 {
        stack
            .post_json(
                "/tasks",
                &json!({"type": "partner", "input": {"n": i}, "max_attempts": 1, "queue": "mail"}),
            )
            .await;
    }
    let failed = Arc::new(Mutex::new(HashMap::new()));
    external_worker(&stack, "f".into(), "fail", failed, 3).await;
    let (_, queued) = stack
        .post_json("/tasks", &json!({"type": "md5", "input": {"string": "q"}}))
        .await;
    let queued = queued["task_id"].as_str().unwrap().to_string();
    let target = stack.url("").trim_end_matches('/').to_string();
    let weir = move |args: &[&str]| {
        let mut all = vec!["tasks", "--target", target.as_str()];
        all.extend_from_slice(args);
        crate::processes::run_weir(&all)
    };
    let queued_for_cli = queued.clone();
    let (table, listed, shown, everything, retried, cancelled) =
        tokio::task::spawn_blocking(move || {
            let table = weir(&[
                "list", "--state", "dead", "--queue", "mail", "--since", "1h",
            ]);
            let listed = weir(&["list", "--error", "PARTNER api", "--json"]);
            let shown = weir(&["show", &queued_for_cli]);
            let everything = weir(&["retry"]);
            let retried = weir(&["retry", "--state", "dead", "--type", "partner"]);
            let cancelled = weir(&["cancel", &queued_for_cli, "--json"]);
            (table, listed, shown, everything, retried, cancelled)
        })
        .await
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.starts_with("ID "), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains(" dead ")).count(),
        3,
        "{table}"
    );
    assert!(table.contains("partner API down"), "{table}");
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 3, "{listed}");
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["id"], queued.as_str());
    assert!(!everything.status.success());
    assert!(
        String::from_utf8_lossy(&everything.stderr).contains("--all"),
        "{everything:?}"
    );
    let retried = String::from_utf8_lossy(&retried.stdout).into_owned();
    assert!(
        retried.contains("done — 3 looked at, 3 changed"),
        "{retried}"
    );
    let cancelled: Value = serde_json::from_slice(&cancelled.stdout).unwrap();
    assert_eq!(
        (cancelled["status"].as_str(), cancelled["changed"].as_i64()),
        (Some("done"), Some(1)),
        "{cancelled}"
    );
    let (_, task) = stack.get_json(&format!("/tasks/{queued}")).await;
    assert_eq!(task["status"], "cancelled");
    stack.stop().await;
}
