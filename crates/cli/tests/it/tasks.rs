//! Tasks end to end: submit through the lb, a worker runs it, the result is
//! readable, and deterministic results come from the cache the second time.

use serde_json::{json, Value};

use crate::support::{Stack, StackOptions, StoreKind};

async fn submit_and_wait(stack: &Stack, path: &str, body: Value) -> Value {
    let (status, accepted) = stack.post_json(path, &body).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "queued");
    let id = accepted["task_id"].as_str().unwrap().to_string();
    let task = stack.wait_task(&id).await;
    assert_eq!(task["id"], id.as_str());
    task
}

async fn md5_and_sha256_run_and_then_come_from_the_cache(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    let task = submit_and_wait(&stack, "/hash/md5", json!({"string": "test_value"})).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["type"], "md5");
    assert_eq!(
        task["result"],
        json!({"md5": "8dd066a9072cfaca57bcedd7f233432f"})
    );
    assert_eq!(task["attempts"], 1);
    assert!(task["worker_id"].as_str().unwrap().starts_with("worker-"));
    for field in ["created_at", "started_at", "completed_at"] {
        assert!(task[field].is_string(), "{field} missing: {task}");
    }

    let (status, cached) = stack
        .post_json("/hash/md5", &json!({"string": "test_value"}))
        .await;
    assert_eq!(status, 200, "{cached}");
    assert_eq!(cached["source"], "cache");
    assert_eq!(
        cached["result"],
        json!({"md5": "8dd066a9072cfaca57bcedd7f233432f"})
    );

    let task = submit_and_wait(&stack, "/hash/sha256", json!({"string": "test_value"})).await;
    // Known answer, from `printf test_value | sha256sum`.
    assert_eq!(
        task["result"]["sha256"],
        "4f7f6a4ae46676d9751fdccdf15ae1e6a200ed0de5653e06390148928c642006"
    );
    let (status, cached) = stack
        .post_json("/hash/sha256", &json!({"string": "test_value"}))
        .await;
    assert_eq!((status, cached["source"].as_str()), (200, Some("cache")));

    // The cache counted it: two misses (first submissions), two hits, and
    // one read on each entry (recorded in batches, so poll).
    let stats = crate::support::poll(std::time::Duration::from_secs(10), || async {
        let (_, s) = stack.get_json("/cache/stats").await;
        (s["hits"] == 2 && s["misses"] == 2).then_some(s)
    })
    .await;
    assert_eq!(stats["entries"], 2, "{stats}");
    assert_eq!(stats["hit_ratio"], 0.5, "{stats}");
    let top = stats["top"].as_array().unwrap();
    assert!(
        top.iter()
            .all(|e| e["access_count"] == 1 && e["last_accessed_at"].is_string()),
        "{stats}"
    );
    stack.stop().await;
}

async fn argon2_gives_a_phc_string_and_is_never_cached(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    let body = json!({"string": "hunter2", "memory_kib": 256, "iterations": 1});
    let first = submit_and_wait(&stack, "/hash/argon2", body.clone()).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let phc = first["result"]["argon2"].as_str().unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{phc}");
    // Random salt: a second run differs and is not served from the cache.
    let second = submit_and_wait(&stack, "/hash/argon2", body).await;
    assert_ne!(second["result"]["argon2"], first["result"]["argon2"]);
    stack.stop().await;
}

async fn general_form_runs_sleep_tasks(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    let task = submit_and_wait(
        &stack,
        "/tasks",
        json!({"type": "sleep", "input": {"ms": 50}}),
    )
    .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["result"], json!({"slept_ms": 50}));
    let task = submit_and_wait(
        &stack,
        "/tasks",
        json!({"type": "md5", "input": {"string": "x"}, "priority": 3}),
    )
    .await;
    assert_eq!(task["priority"], 3);
    assert_eq!(task["result"]["md5"], "9dd4e461268c8034f5c8564e155c67a6");
    stack.stop().await;
}

async fn failing_tasks_retry_die_and_can_be_retried_or_cancelled(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    // Fails once, succeeds on the second attempt.
    let task = submit_and_wait(
        &stack,
        "/tasks",
        json!({"type": "flaky", "input": {"fail_times": 1}, "max_attempts": 3}),
    )
    .await;
    assert_eq!(
        (task["status"].as_str(), task["attempts"].as_i64()),
        (Some("succeeded"), Some(2)),
        "{task}"
    );

    // Out of attempts: dead, with the last error.
    let dead = submit_and_wait(
        &stack,
        "/tasks",
        json!({"type": "flaky", "input": {"fail_times": 50}, "max_attempts": 2}),
    )
    .await;
    assert_eq!(dead["status"], "dead", "{dead}");
    assert!(
        dead["error"].as_str().unwrap().contains("fails on purpose"),
        "{dead}"
    );
    let id = dead["id"].as_str().unwrap();
    let http = &stack.http;
    let retried = http
        .post(stack.url(&format!("/tasks/{id}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
    let again = stack.wait_task(id).await;
    assert_eq!(
        (again["status"].as_str(), again["attempts"].as_i64()),
        (Some("dead"), Some(2)),
        "{again}"
    );

    // Retrying a task that is not dead, or one that does not exist.
    let ok_id = task["id"].as_str().unwrap();
    let resp = http
        .post(stack.url(&format!("/tasks/{ok_id}/retry")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "task_not_dead"
    );
    let resp = http
        .post(stack.url(&format!("/tasks/{}/retry", weir_core::TaskId::new())))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Cancel a task due in an hour; then it is finished and cannot be cancelled again.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, accepted) = stack
        .post_json(
            "/tasks",
            &json!({"type": "noop", "input": {}, "run_at": later}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["task_id"].as_str().unwrap();
    let resp = http
        .delete(stack.url(&format!("/tasks/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "cancelled");
    let resp = http
        .delete(stack.url(&format!("/tasks/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "task_finished"
    );
    stack.stop().await;
}

async fn an_idempotency_key_gives_the_same_task_again(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    let http = &stack.http;
    let submit = |key: &'static str| {
        http.post(stack.url("/tasks"))
            .header("idempotency-key", key)
            .json(&json!({"type": "sleep", "input": {"ms": 10}}))
            .send()
    };
    let first = submit("order-17").await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    // A client retrying after a lost answer: same task, told it is a replay.
    let again = submit("order-17").await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["task_id"], first["task_id"]);
    // The same key with another request is refused, not answered with the
    // first one's task (draft-ietf-httpapi-idempotency-key-header: 422).
    let reused = http
        .post(stack.url("/tasks"))
        .header("idempotency-key", "order-17")
        .json(&json!({"type": "sleep", "input": {"ms": 20}}))
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), 422);
    let reused: Value = reused.json().await.unwrap();
    assert_eq!(
        reused["error"]["code"], "idempotency_key_reused",
        "{reused}"
    );
    let (_, listed) = stack.get_json("/tasks?limit=100").await;
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 1, "{listed}");
    // The body field works too, and a different key is a different task.
    let (status, other) = stack
        .post_json(
            "/tasks",
            &json!({"type": "sleep", "input": {"ms": 10}, "idempotency_key": "order-18"}),
        )
        .await;
    assert_eq!(status, 202);
    assert_ne!(other["task_id"], first["task_id"]);
    // Header and field must agree.
    let resp = http
        .post(stack.url("/tasks"))
        .header("idempotency-key", "a")
        .json(&json!({"type": "noop", "input": {}, "idempotency_key": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_idempotency_key"
    );
    let done = stack.wait_task(first["task_id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded");
    stack.stop().await;
}

async fn tasks_are_listed_newest_first_page_by_page(store: StoreKind) {
    let stack = Stack::start(StackOptions {
        store,
        workers: 0,
        ..StackOptions::default()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let kind = if i % 2 == 0 { "noop" } else { "sleep" };
        let input = if i % 2 == 0 {
            json!({})
        } else {
            json!({"ms": 1})
        };
        let (_, accepted) = stack
            .post_json("/tasks", &json!({"type": kind, "input": input}))
            .await;
        ids.push(accepted["task_id"].as_str().unwrap().to_string());
    }
    let (status, page) = stack.get_json("/tasks?limit=2").await;
    assert_eq!(status, 200, "{page}");
    let got: Vec<&str> = page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[4].as_str(), ids[3].as_str()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) = stack
        .get_json(&format!("/tasks?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(next["tasks"][0]["id"], ids[2].as_str());
    let (_, noops) = stack.get_json("/tasks?type=noop&status=queued").await;
    assert_eq!(noops["tasks"].as_array().unwrap().len(), 3);
    assert!(noops["next_cursor"].is_null());
    for bad in [
        "/tasks?status=nope",
        "/tasks?type=nope",
        "/tasks?limit=0",
        "/tasks?cursor=zzz",
        "/tasks?color=red",
    ] {
        let resp = stack.http.get(stack.url(bad)).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
    stack.stop().await;
}

/// `GET /tasks?limit=500` of tasks with large inputs made one answer of
/// 500 inputs, held whole by the API node until the client read it: a few
/// clients that never read could make it hold gigabytes.
async fn regression_a_page_of_large_tasks_ends_near_a_mebibyte(store: StoreKind) {
    let stack = Stack::start(StackOptions {
        store,
        workers: 0,
        ..StackOptions::default()
    })
    .await;
    let large = "x".repeat(200_000);
    let mut ids = Vec::new();
    for i in 0..12 {
        // Distinct inputs: an md5 of the same input is the same task.
        let input = format!("{i:02}{large}");
        let (status, accepted) = stack
            .post_json(
                "/tasks",
                &json!({"type": "md5", "input": {"string": input}}),
            )
            .await;
        assert_eq!(status, 202, "{accepted}");
        ids.push(accepted["task_id"].as_str().unwrap().to_string());
    }
    ids.reverse();
    let mut listed = Vec::new();
    let mut path = "/tasks?limit=500".to_string();
    loop {
        let resp = stack.http.get(stack.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.bytes().await.unwrap();
        assert!(
            body.len() < 1024 * 1024 + 210_000,
            "a page of {} bytes",
            body.len()
        );
        let page: Value = serde_json::from_slice(&body).unwrap();
        let tasks = page["tasks"].as_array().unwrap();
        assert!(
            !tasks.is_empty() && tasks.len() < 12,
            "{} tasks",
            tasks.len()
        );
        listed.extend(tasks.iter().map(|t| t["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/tasks?limit=500&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(listed, ids, "every task, once, newest first");
    stack.stop().await;
}

crate::for_each_store!(
    regression_a_page_of_large_tasks_ends_near_a_mebibyte,
    tasks_are_listed_newest_first_page_by_page,
    an_idempotency_key_gives_the_same_task_again,
    md5_and_sha256_run_and_then_come_from_the_cache,
    argon2_gives_a_phc_string_and_is_never_cached,
    general_form_runs_sleep_tasks,
    failing_tasks_retry_die_and_can_be_retried_or_cancelled
);
