//! `GET /openapi.json` against the real routes: every documented operation is
//! served, nothing else is, and live answers carry what their schemas require.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::support::{Stack, StackOptions, StoreKind};

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// A concrete URL path for a templated one.
fn concrete(path: &str) -> String {
    path.replace("{id}", "0190e5e0-0000-7000-8000-000000000000")
        .replace("{kind}", "md5")
}

/// The properties `schema` (a `$ref` into components, or inline) requires.
fn required(spec: &Value, schema: &Value) -> BTreeSet<String> {
    let schema = match schema["$ref"].as_str() {
        Some(r) => &spec["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    };
    schema["required"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn response_schema<'a>(spec: &'a Value, path: &str, method: &str) -> &'a Value {
    &spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_served_routes() {
    let stack = Stack::start(StackOptions::on(StoreKind::Sqlite)).await;
    let (status, spec) = stack.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3."),
        "{spec}"
    );
    let paths = spec["paths"].as_object().unwrap();
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    for want in [
        "/",
        "/tasks",
        "/tasks/{id}",
        "/tasks/{id}/retry",
        "/tasks/stats",
        "/hash/{kind}",
        "/workers",
        "/cache/stats",
        "/write",
        "/messages",
        "/messages/count",
        "/health",
        "/metrics",
        "/requests/stats",
        "/openapi.json",
    ] {
        assert!(documented.contains(want), "{want} is not documented");
    }

    // Every reference resolves (a dangling one breaks client generators),
    // and a query's parameters are in the query.
    let text = spec.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(
            spec["components"]["schemas"].get(name).is_some(),
            "{name} is referenced but not in components.schemas"
        );
    }
    for (path, item) in paths {
        for op in item.as_object().unwrap().values() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let named = format!("{{{}}}", p["name"].as_str().unwrap());
                assert!(
                    p["in"] != "path" || path.contains(&named),
                    "{path}: {} is declared in the path",
                    p["name"]
                );
            }
        }
    }

    for (path, item) in paths {
        let url = stack.url(&concrete(path));
        for method in METHODS {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut req = stack.http.request(m, &url);
            if method != "get" && method != "delete" {
                req = req.json(&json!({}));
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            let code = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            if item.get(method).is_some() {
                // Served: whatever it says, it is not the router's "no route".
                assert!(
                    !matches!(code.as_deref(), Some("not_found" | "method_not_allowed")),
                    "{method} {path} is documented but not served: {status} {body}"
                );
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path} is served but not documented: {body}"
                );
            }
        }
    }
    let resp = stack
        .http
        .get(stack.url("/not-a-route"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Live answers have every field their schema requires.
    let (status, accepted) = stack
        .post_json(
            "/tasks",
            &json!({"type": "md5", "input": {"string": "openapi"}}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let task_required = required(
        &spec,
        &spec["paths"]["/tasks"]["post"]["responses"]["202"]["content"]["application/json"]
            ["schema"],
    );
    assert!(
        task_required.is_subset(&keys(&accepted)),
        "{task_required:?} vs {accepted}"
    );
    let id = accepted["task_id"].as_str().unwrap();
    let task = stack.wait_task(id).await;
    let want = required(&spec, response_schema(&spec, "/tasks/{id}", "get"));
    assert!(want.contains("status") && want.contains("type"), "{want:?}");
    assert!(want.is_subset(&keys(&task)), "{want:?} vs {task}");
    for (path, url) in [
        ("/tasks/stats", "/tasks/stats".to_owned()),
        ("/workers", "/workers".to_owned()),
        ("/health", "/health".to_owned()),
        ("/cache/stats", "/cache/stats".to_owned()),
        ("/tasks", "/tasks?limit=1".to_owned()),
        ("/messages/count", "/messages/count".to_owned()),
    ] {
        let (status, live) = stack.get_json(&url).await;
        assert_eq!(status, 200, "{url}: {live}");
        let want = required(&spec, response_schema(&spec, path, "get"));
        assert!(!want.is_empty(), "{path} documents no required fields");
        assert!(want.is_subset(&keys(&live)), "{path}: {want:?} vs {live}");
    }
    stack.stop().await;
}
