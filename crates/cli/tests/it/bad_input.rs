//! Bad input gets a precise 4xx JSON error, never a 500.

use serde_json::{json, Value};

use crate::support::{Stack, StackOptions, StoreKind, ADMIN_TOKEN};

async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

async fn api_rejects_bad_input_with_json_errors(store: StoreKind) {
    let stack = Stack::start(StackOptions {
        store,
        max_body_bytes: 4096,
        ..StackOptions::default()
    })
    .await;
    let http = &stack.http;
    let post = |path: &str, body: &str| http.post(stack.url(path)).body(body.to_string()).send();

    let body = expect_error(
        post("/tasks", r#"{"type":"bcrypt","input":{}}"#)
            .await
            .unwrap(),
        400,
        "unknown_task_type",
    )
    .await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("bcrypt"));
    expect_error(
        post("/hash/bcrypt", r#"{"string":"x"}"#).await.unwrap(),
        400,
        "unknown_task_type",
    )
    .await;
    expect_error(
        post("/hash/md5", r#"{}"#).await.unwrap(),
        400,
        "invalid_input",
    )
    .await;
    // A field of the wrong type is named, with what it accepts.
    let body = expect_error(
        post(
            "/tasks",
            r#"{"type":"noop","input":{},"run_at":"not-a-date"}"#,
        )
        .await
        .unwrap(),
        400,
        "invalid_input",
    )
    .await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("run_at: expected an RFC 3339 time"),
        "{message}"
    );
    let body = expect_error(
        post(
            "/tasks",
            r#"{"type":"noop","input":{},"priority":99999999999}"#,
        )
        .await
        .unwrap(),
        400,
        "invalid_input",
    )
    .await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("priority: expected an integer from -2147483648 to 2147483647"),
        "{message}"
    );
    expect_error(
        post("/hash/md5", r#"{"string": 42}"#).await.unwrap(),
        400,
        "invalid_input",
    )
    .await;
    expect_error(
        post("/tasks", r#"{"type":"md5"}"#).await.unwrap(),
        400,
        "invalid_input",
    )
    .await;
    expect_error(
        post("/tasks", r#"{"type":"sleep","input":{"ms":-5}}"#)
            .await
            .unwrap(),
        400,
        "invalid_input",
    )
    .await;
    expect_error(
        post(
            "/tasks",
            r#"{"type":"md5","input":{"string":"x"},"max_attempts":0}"#,
        )
        .await
        .unwrap(),
        400,
        "invalid_input",
    )
    .await;
    let body = expect_error(
        post("/hash/md5", "{\"string\":\n  \"x\"").await.unwrap(),
        400,
        "invalid_json",
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{body}"
    );
    expect_error(post("/hash/md5", "").await.unwrap(), 400, "missing_body").await;
    let big = format!(r#"{{"string":"{}"}}"#, "a".repeat(5000));
    expect_error(
        post("/hash/md5", &big).await.unwrap(),
        413,
        "payload_too_large",
    )
    .await;

    let get = |path: &str| http.get(stack.url(path)).send();
    expect_error(
        get("/tasks/not-a-uuid").await.unwrap(),
        404,
        "task_not_found",
    )
    .await;
    expect_error(
        get("/tasks/01a21027-8f4c-7416-9111-c422bdc01f66")
            .await
            .unwrap(),
        404,
        "task_not_found",
    )
    .await;
    expect_error(get("/nowhere").await.unwrap(), 404, "not_found").await;
    expect_error(
        http.delete(stack.url("/workers")).send().await.unwrap(),
        405,
        "method_not_allowed",
    )
    .await;
    stack.stop().await;
}

async fn lb_admin_rejects_bad_tokens_and_unknown_strategies(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    let put = |token: Option<&str>, body: Value| {
        let mut req = stack.http.put(stack.url("/lb/strategy")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let lc = json!({"strategy": "least_connections"});
    expect_error(put(None, lc.clone()).await.unwrap(), 401, "missing_token").await;
    expect_error(
        put(Some("wrong"), lc.clone()).await.unwrap(),
        401,
        "invalid_token",
    )
    .await;
    expect_error(
        put(Some(ADMIN_TOKEN), json!({"strategy": "fastest"}))
            .await
            .unwrap(),
        400,
        "unknown_strategy",
    )
    .await;
    expect_error(
        put(Some(ADMIN_TOKEN), json!({"nope": 1})).await.unwrap(),
        400,
        "invalid_json",
    )
    .await;
    let (_, before) = stack.get_json("/lb/strategy").await;
    assert_eq!(before["strategy"], "round_robin");

    let resp = put(Some(ADMIN_TOKEN), lc).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (_, after) = stack.get_json("/lb/strategy").await;
    assert_eq!(after["strategy"], "least_connections");
    let (_, stats) = stack.get_json("/lb/stats").await;
    assert_eq!(stats["strategy"], "least_connections");
    assert_eq!(stats["backends"].as_array().unwrap().len(), 3);
    for b in stats["backends"].as_array().unwrap() {
        for field in ["requests", "in_flight", "errors"] {
            assert!(b[field].is_u64(), "{field} missing: {b}");
        }
    }
    stack.stop().await;
}

crate::for_each_store!(
    api_rejects_bad_input_with_json_errors,
    lb_admin_rejects_bad_tokens_and_unknown_strategies,
    every_input_limit_gets_its_json_4xx
);

/// Every input limit of an API node, driven past its edge: each gets its own
/// 4xx with the JSON error shape, and the node keeps serving.
async fn every_input_limit_gets_its_json_4xx(store: StoreKind) {
    let stack = Stack::start(StackOptions {
        max_write_events: 10,
        ..StackOptions::on(store)
    })
    .await;
    let http = &stack.http;
    let post = |path: &str, body: String| {
        http.post(stack.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "/tasks",
            format!(r#"{{"type":"noop","input":{{"x":{deep}}}}}"#),
            400,
            "invalid_json",
        ),
        (
            "/tasks",
            format!(
                r#"{{"type":"noop","input":{{}},"queue":"{}"}}"#,
                "q".repeat(65)
            ),
            400,
            "invalid_queue",
        ),
        (
            "/tasks",
            format!(
                r#"{{"type":"noop","input":{{}},"idempotency_key":"{}"}}"#,
                "k".repeat(300)
            ),
            400,
            "invalid_idempotency_key",
        ),
        (
            "/tasks",
            format!(
                r#"{{"type":"noop","input":{{}},"concurrency_key":"{}"}}"#,
                "c".repeat(300)
            ),
            400,
            "invalid_concurrency_key",
        ),
        (
            "/hash/argon2",
            r#"{"string":"x","memory_kib":10000000}"#.to_string(),
            400,
            "invalid_input",
        ),
        (
            "/hash/argon2",
            r#"{"string":"x","iterations":1000}"#.to_string(),
            400,
            "invalid_input",
        ),
        (
            "/write",
            serde_json::to_string(
                &(0..11)
                    .map(|i| json!({"id": format!("e{i}"), "type": "t", "payload": {}}))
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
            413,
            "too_many_events",
        ),
    ];
    for (path, body, status, code) in cases {
        let resp = post(path, body).await.unwrap();
        let got = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {answer}"
        );
    }
    // One NDJSON line past the largest event.
    let line = format!(
        "{{\"id\":\"big\",\"pad\":\"{}\"}}\n",
        "p".repeat(1024 * 1024)
    );
    let resp = http
        .post(stack.url("/write"))
        .header("content-type", "application/x-ndjson")
        .body(format!("{{\"id\":\"small\"}}\n{line}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "event_too_large", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{answer}"
    );
    for n in ["0", "1001", "-1", "lots"] {
        let resp = http
            .get(stack.url(&format!("/messages?n={n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "n={n}");
        let answer: Value = resp.json().await.unwrap();
        assert!(answer["error"]["code"].is_string(), "n={n}: {answer}");
    }
    let (status, _) = stack
        .post_json("/hash/md5", &json!({"string": "still up"}))
        .await;
    assert!(status == 202 || status == 200);
    stack.stop().await;
}
