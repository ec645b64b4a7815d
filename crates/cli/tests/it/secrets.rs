//! Secret inputs: argon2's password is sealed before it is stored, opened
//! only by the worker running the attempt, and redacted in every answer.

use argon2::{PasswordHash, PasswordVerifier};
use serde_json::json;

use crate::support::{Stack, StackOptions, StoreKind};

const PASSWORD: &str = "hunter2-secret";

/// Every byte the store holds, as text: the SQLite files, or every row of
/// every PostgreSQL table.
async fn store_bytes(stack: &Stack) -> String {
    if let Some(path) = stack.database_url.strip_prefix("sqlite://") {
        let dir = std::path::Path::new(path).parent().unwrap();
        let mut all = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            all.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
        }
        return String::from_utf8_lossy(&all).into_owned();
    }
    let db = sqlx::PgPool::connect(&stack.database_url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let mut all = String::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
            .fetch_all(&db)
            .await
            .unwrap();
        all.push_str(&rows.join("\n"));
    }
    all
}

/// Regression: `POST /hash/argon2 {"string": …}` stored the password in
/// clear and `GET /tasks/{id}` and `GET /tasks?type=argon2` showed it to
/// anyone.
async fn regression_an_argon2_password_is_never_stored_or_shown_in_clear(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    let body = json!({"string": PASSWORD, "memory_kib": 256, "iterations": 1});
    let (status, accepted) = stack.post_json("/hash/argon2", &body).await;
    assert_eq!(status, 202, "{accepted}");
    assert!(!accepted.to_string().contains(PASSWORD), "{accepted}");
    let id = accepted["task_id"].as_str().unwrap().to_string();
    let task = stack.wait_task(&id).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    // The worker had the password: the hash verifies against it.
    let phc = task["result"]["argon2"].as_str().unwrap();
    argon2::Argon2::default()
        .verify_password(PASSWORD.as_bytes(), &PasswordHash::new(phc).unwrap())
        .expect("the hash is of the submitted password");
    assert_eq!(task["input"]["string"], "[redacted]", "{task}");
    assert_eq!(task["input"]["memory_kib"], 256, "other fields are shown");
    for path in [
        format!("/tasks/{id}"),
        "/tasks?type=argon2".to_string(),
        "/tasks".to_string(),
        "/tasks?status=succeeded".to_string(),
    ] {
        let resp = stack.http.get(stack.url(&path)).send().await.unwrap();
        let text = resp.text().await.unwrap();
        assert!(
            !text.contains(PASSWORD),
            "{path} shows the password: {text}"
        );
    }
    let stored = store_bytes(&stack).await;
    assert!(
        !stored.contains(PASSWORD),
        "the password is in the store in clear"
    );
    stack.stop().await;
}

crate::for_each_store!(regression_an_argon2_password_is_never_stored_or_shown_in_clear);

/// Tokens and keys given to `weir up` never appear in what it logs (at
/// debug level, with access logs), in either metrics page, or in an error
/// answer — whether the right or a wrong credential was presented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_logs_metrics_or_answers() {
    const ADMIN: &str = "admin-token-5f1c9e";
    const WORKER: &str = "worker-token-7a2b4d";
    let (client_key, entry) = weir_api::api_keys::ApiKeys::generate(
        "ci",
        &[
            weir_api::api_keys::Scope::Submit,
            weir_api::api_keys::Scope::Read,
        ],
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, entry).unwrap();
    let data = dir.path().join("data");
    let (mut child, mut lines, rx, base) = crate::processes::start_up_keeping_every_line(&[
        "--admin-token".as_ref(),
        ADMIN.as_ref(),
        "--worker-token".as_ref(),
        WORKER.as_ref(),
        "--api-keys".as_ref(),
        keys.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    let http = reqwest::Client::new();
    let mut answers = Vec::new();
    for token in [ADMIN, "wrong-admin-token"] {
        let resp = http
            .put(format!("{base}/lb/strategy"))
            .bearer_auth(token)
            .json(&json!({"strategy": "round_robin"}))
            .send()
            .await
            .unwrap();
        answers.push(resp.text().await.unwrap());
    }
    for key in [client_key.as_str(), "wk_wrong"] {
        let resp = http
            .post(format!("{base}/hash/md5"))
            .bearer_auth(key)
            .json(&json!({"string": "x"}))
            .send()
            .await
            .unwrap();
        answers.push(resp.text().await.unwrap());
    }
    for token in [WORKER, "wrong-worker-token"] {
        let resp = http
            .post(format!("{base}/workers/w1/claim"))
            .bearer_auth(token)
            .json(&json!({"types": ["md5"], "wait": 0}))
            .send()
            .await
            .unwrap();
        answers.push(resp.text().await.unwrap());
    }
    for path in ["/lb/metrics", "/metrics", "/dashboard"] {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        answers.push(resp.text().await.unwrap());
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
        lines.push(line);
    }
    assert!(
        lines.len() > 5,
        "too few log lines to mean anything: {lines:?}"
    );
    for secret in [ADMIN, WORKER, client_key.as_str()] {
        let leaks: Vec<_> = lines.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "logged: {leaks:?}");
        let shown: Vec<_> = answers.iter().filter(|a| a.contains(secret)).collect();
        assert!(shown.is_empty(), "answered: {shown:?}");
    }
}
