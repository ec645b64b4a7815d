//! `--api-keys`: every task, event and request-log endpoint needs a key
//! with the scope its method implies; health and metrics stay open.

use serde_json::{json, Value};
use weir_api::api_keys::{ApiKeys, Scope};

use crate::support::{Stack, StackOptions, StoreKind};

async fn call(stack: &Stack, method: &str, path: &str, key: Option<&str>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = stack.http.request(method.clone(), stack.url(path));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if method == reqwest::Method::POST {
        let body = match path {
            "/write" => json!([{"id": "e1", "type": "t", "payload": {}}]),
            _ => json!({"string": "x"}),
        };
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn keys_gate_every_endpoint_by_scope(store: StoreKind) {
    let (submitter, a) = ApiKeys::generate("submitter", &[Scope::Submit], None);
    let (reader, b) = ApiKeys::generate("reader", &[Scope::Read], None);
    let (manager, c) = ApiKeys::generate("manager", &[Scope::Manage, Scope::Read], None);
    let keys = ApiKeys::parse(&format!("{a}\n{b}\n{c}")).unwrap();
    let stack = Stack::start(StackOptions {
        api_keys: Some(keys),
        worker_token: Some("worker-token".into()),
        ..StackOptions::on(store)
    })
    .await;
    // External workers keep their own token.
    let resp = stack
        .http
        .post(stack.url("/workers/w1/claim"))
        .bearer_auth("worker-token")
        .json(&json!({"types": ["md5"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    let (status, body) = call(&stack, "POST", "/hash/md5", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("missing_api_key")),
        "{body}"
    );
    let (status, body) = call(&stack, "GET", "/tasks", Some("wk_nope")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_api_key")),
        "{body}"
    );
    for open in ["/health", "/metrics"] {
        assert_eq!(call(&stack, "GET", open, None).await.0, 200, "{open}");
    }

    let (status, accepted) = call(&stack, "POST", "/hash/md5", Some(&submitter)).await;
    assert!(status == 202 || status == 200, "{accepted}");
    let (status, body) = call(&stack, "GET", "/tasks", Some(&submitter)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("missing_scope")),
        "{body}"
    );
    assert_eq!(
        call(&stack, "POST", "/write", Some(&submitter)).await.0,
        202
    );

    assert_eq!(call(&stack, "GET", "/tasks", Some(&reader)).await.0, 200);
    assert_eq!(
        call(&stack, "GET", "/requests/stats", Some(&reader))
            .await
            .0,
        200
    );
    assert_eq!(call(&stack, "GET", "/messages", Some(&reader)).await.0, 200);
    assert_eq!(
        call(&stack, "GET", "/messages", Some(&submitter)).await.0,
        403
    );
    assert_eq!(call(&stack, "POST", "/tasks", Some(&reader)).await.0, 403);
    assert_eq!(call(&stack, "GET", "/", Some(&reader)).await.0, 403);

    let (status, posted) = {
        let resp = stack
            .http
            .post(stack.url("/tasks"))
            .bearer_auth(&submitter)
            .json(
                &json!({"type": "sleep", "input": {"ms": 60000}, "run_at": "2099-01-01T00:00:00Z"}),
            )
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 202, "{posted}");
    let id = posted["task_id"].as_str().unwrap();
    let path = format!("/tasks/{id}");
    assert_eq!(call(&stack, "DELETE", &path, Some(&reader)).await.0, 403);
    let (status, cancelled) = call(&stack, "DELETE", &path, Some(&manager)).await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled")),
        "{cancelled}"
    );
    stack.stop().await;
}

/// A browser's preflight from `origin` for a keyed POST, and the origin it
/// was allowed (the `Access-Control-Allow-Origin` answer), if any.
async fn preflight(stack: &Stack, origin: &str) -> (u16, Option<String>) {
    let resp = stack
        .http
        .request(reqwest::Method::OPTIONS, stack.url("/tasks"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    let allowed = resp
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), allowed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_closed_unless_an_origin_is_configured() {
    let app = "https://app.example.com";
    let closed = Stack::start(StackOptions::on(StoreKind::Sqlite)).await;
    assert_eq!(
        preflight(&closed, app).await.1,
        None,
        "CORS open by default"
    );
    let resp = closed
        .http
        .get(closed.url("/health"))
        .header("origin", app)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    closed.stop().await;

    // Configured, with keys: the preflight (which carries no key) is
    // answered for the listed origin only; the real call still needs a key.
    let (key, entry) = ApiKeys::generate("browser", &[Scope::Submit], None);
    let stack = Stack::start(StackOptions {
        api_keys: Some(ApiKeys::parse(&entry).unwrap()),
        cors_origins: vec![app.to_owned()],
        ..StackOptions::on(StoreKind::Sqlite)
    })
    .await;
    assert_eq!(preflight(&stack, app).await, (200, Some(app.to_owned())));
    assert_eq!(preflight(&stack, "https://evil.example").await.1, None);
    let resp = stack
        .http
        .post(stack.url("/hash/md5"))
        .header("origin", app)
        .bearer_auth(&key)
        .json(&json!({"string": "cors"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["access-control-allow-origin"], app);
    stack.stop().await;
}

/// POSTs `body` to `path` with `key` (and an idempotency key, if given).
async fn post_as(
    stack: &Stack,
    path: &str,
    key: &str,
    body: Value,
    idempotency: Option<&str>,
) -> (u16, Value) {
    let mut req = stack
        .http
        .post(stack.url(path))
        .bearer_auth(key)
        .json(&body);
    if let Some(k) = idempotency {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn a_tenant_key_sees_and_changes_only_its_tenants_tasks(store: StoreKind) {
    let all = [Scope::Submit, Scope::Read, Scope::Manage];
    let (acme, a) = ApiKeys::generate("acme", &all, Some("acme"));
    let (globex, g) = ApiKeys::generate("globex", &all, Some("globex"));
    let (operator, o) = ApiKeys::generate("operator", &[Scope::Read, Scope::Manage], None);
    let stack = Stack::start(StackOptions {
        api_keys: Some(ApiKeys::parse(&format!("{a}\n{g}\n{o}")).unwrap()),
        ..StackOptions::on(store)
    })
    .await;
    let later = json!({"type": "sleep", "input": {"ms": 10}, "run_at": "2099-01-01T00:00:00Z"});
    let (status, mine) = post_as(&stack, "/tasks", &acme, later.clone(), None).await;
    assert_eq!(status, 202, "{mine}");
    let (status, theirs) = post_as(&stack, "/tasks", &globex, later, None).await;
    assert_eq!(status, 202, "{theirs}");
    let (mine, theirs) = (
        mine["task_id"].as_str().unwrap(),
        theirs["task_id"].as_str().unwrap(),
    );

    // Another tenant's task does not exist for this key: not read, not
    // cancelled, not retried, not listed.
    let theirs_path = format!("/tasks/{theirs}");
    assert_eq!(call(&stack, "GET", &theirs_path, Some(&acme)).await.0, 404);
    assert_eq!(
        call(&stack, "DELETE", &theirs_path, Some(&acme)).await.0,
        404
    );
    let retry = format!("{theirs_path}/retry");
    assert_eq!(call(&stack, "POST", &retry, Some(&acme)).await.0, 404);
    let (status, task) = call(&stack, "GET", &theirs_path, Some(&operator)).await;
    assert_eq!(
        (status, task["status"].as_str(), task["tenant"].as_str()),
        (200, Some("queued"), Some("globex")),
        "{task}"
    );
    let (_, listed) = call(&stack, "GET", "/tasks?limit=500", Some(&acme)).await;
    let listed = listed["tasks"].as_array().unwrap();
    assert!(listed.iter().any(|t| t["id"] == mine), "{listed:?}");
    assert!(
        listed.iter().all(|t| t["tenant"] == "acme"),
        "acme's listing shows another tenant's task: {listed:?}"
    );
    let (_, everyone) = call(&stack, "GET", "/tasks?limit=500", Some(&operator)).await;
    assert!(everyone["tasks"].as_array().unwrap().len() >= 2);

    // Cache and idempotency keys are each tenant's own: the same input or
    // key from another tenant is a new task, never the other's.
    let shared = json!({"string": "shared-input"});
    let (_, first) = post_as(&stack, "/hash/md5", &acme, shared.clone(), None).await;
    let (status, second) = post_as(&stack, "/hash/md5", &globex, shared, None).await;
    assert_eq!(status, 202, "globex got acme's task or result: {second}");
    assert_ne!(first["task_id"], second["task_id"]);
    // And once acme's task has succeeded, its cached result is acme's:
    // another tenant (or a key without one) computes its own.
    let cached = json!({"string": "cached-input"});
    let (status, done) = post_as(&stack, "/hash/md5", &acme, cached.clone(), None).await;
    assert_eq!(status, 202, "{done}");
    let path = format!("/tasks/{}", done["task_id"].as_str().unwrap());
    crate::support::poll(std::time::Duration::from_secs(30), || async {
        let (_, task) = call(&stack, "GET", &path, Some(&operator)).await;
        (task["status"] == "succeeded").then_some(())
    })
    .await;
    let (status, again) = post_as(&stack, "/hash/md5", &acme, cached.clone(), None).await;
    assert_eq!(
        (status, again["source"].as_str()),
        (200, Some("cache")),
        "acme's own result is cached for acme: {again}"
    );
    let (status, other) = post_as(&stack, "/hash/md5", &globex, cached, None).await;
    assert_eq!(
        status, 202,
        "globex was answered from acme's cache: {other}"
    );
    let once = json!({"type": "noop", "input": {}});
    let (_, first) = post_as(&stack, "/tasks", &acme, once.clone(), Some("order-1")).await;
    let (status, second) = post_as(&stack, "/tasks", &globex, once, Some("order-1")).await;
    assert_eq!(
        status, 202,
        "globex replayed acme's idempotency key: {second}"
    );
    assert_ne!(first["task_id"], second["task_id"]);

    let (status, cancelled) = call(&stack, "DELETE", &theirs_path, Some(&globex)).await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled"))
    );
    stack.stop().await;
}

crate::for_each_store!(
    keys_gate_every_endpoint_by_scope,
    a_tenant_key_sees_and_changes_only_its_tenants_tasks
);
