//! PostgreSQL refusing connections or going away mid-load: requests wait a
//! bounded time, then get 503 database_busy with Retry-After (never a 500,
//! never a hang); the processes reconnect by themselves; nothing acknowledged
//! is lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::support::{poll, Stack, StackOptions, StoreKind};

/// What one request got: status, error code, and whether Retry-After was set.
async fn submit(
    http: &reqwest::Client,
    base: &str,
    input: &str,
) -> (u16, Option<String>, bool, Option<String>) {
    let resp = http
        .post(format!("{base}/hash/md5"))
        .json(&json!({"string": input}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp.headers().contains_key("retry-after");
    let body: Value = resp.json().await.unwrap();
    let code = body["error"]["code"].as_str().map(str::to_string);
    let id = body["task_id"].as_str().map(str::to_string);
    (status, code, retry_after, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_waits_then_answers_503_and_recovers() {
    let busy_timeout = Duration::from_millis(800);
    let stack = Stack::start(StackOptions {
        store: StoreKind::Postgres,
        workers: 1,
        pg_connection_limit: Some(2),
        db_max_connections: 8,
        db_busy_timeout: busy_timeout,
        ..StackOptions::default()
    })
    .await;
    let role = stack.pg().owner_role().unwrap().to_string();

    // A pool of 8 against a role allowed 2 connections, 50 clients at once:
    // each request is served, or told 503 database_busy — nothing else.
    let statuses: Vec<(u16, Option<String>, bool, Option<String>)> = stream::iter(0..200)
        .map(|i| {
            let (http, base) = (stack.http.clone(), stack.base.clone());
            async move { submit(&http, &base, &format!("cap-{i}")).await }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for (status, code, retry_after, _) in &statuses {
        *by_status.entry(*status).or_default() += 1;
        match status {
            202 => {}
            503 => assert!(code.as_deref() == Some("database_busy") && *retry_after),
            other => panic!("unexpected {other} {code:?}"),
        }
    }
    assert!(
        by_status.get(&202).copied().unwrap_or(0) > 0,
        "{by_status:?}"
    );

    // The server refuses every new connection and the old ones are gone.
    let mut admin = stack.pg().admin().await;
    sqlx::query(&format!("ALTER ROLE {role} CONNECTION LIMIT 0"))
        .execute(&mut admin)
        .await
        .unwrap();
    stack.pg().terminate_sessions().await;
    for i in 0..5 {
        let started = Instant::now();
        let (status, code, retry_after, _) =
            submit(&stack.http, &stack.base, &format!("refused-{i}")).await;
        assert_eq!(
            (status, code.as_deref(), retry_after),
            (503, Some("database_busy"), true)
        );
        // Bounded: the busy timeout plus scheduling slack, not a hang.
        assert!(
            started.elapsed() < busy_timeout * 10,
            "{:?}",
            started.elapsed()
        );
    }

    // Connections allowed again (with room for the worker's LISTEN session
    // too): the node reconnects by itself.
    sqlx::query(&format!("ALTER ROLE {role} CONNECTION LIMIT 4"))
        .execute(&mut admin)
        .await
        .unwrap();
    let id = poll(Duration::from_secs(60), || async {
        let (status, _, _, id) = submit(&stack.http, &stack.base, "after-recovery").await;
        (status == 202).then_some(id).flatten()
    })
    .await;
    // Still capped at a few connections, a read may itself be told 503: poll
    // through those.
    let task = poll(Duration::from_secs(60), || async {
        let (status, task) = stack.get_json(&format!("/tasks/{id}")).await;
        (status == 200 && task["status"] == "succeeded").then_some(task)
    })
    .await;
    assert_eq!(task["status"], "succeeded", "{task}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_killed_mid_load_lose_no_acknowledged_task() {
    let stack = Stack::start(StackOptions {
        store: StoreKind::Postgres,
        db_busy_timeout: Duration::from_secs(2),
        ..StackOptions::default()
    })
    .await;
    // While clients submit, every session on the database is ended again and
    // again, as a restarting server would.
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        let pg_url = stack.pg().url().to_string();
        tokio::spawn(async move {
            let mut kills = 0;
            let mut pace = tokio::time::interval(Duration::from_millis(150));
            while !stop.load(Ordering::Relaxed) {
                pace.tick().await;
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&pg_url)
                    .await
                    .unwrap();
                let _ = sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                )
                .execute(&mut conn)
                .await;
                kills += 1;
                drop(conn);
            }
            kills
        })
    };
    let results: Vec<(u16, Option<String>, bool, Option<String>)> = stream::iter(0..600)
        .map(|i| {
            let (http, base) = (stack.http.clone(), stack.base.clone());
            async move { submit(&http, &base, &format!("outage-{i}")).await }
        })
        .buffer_unordered(20)
        .collect()
        .await;
    stop.store(true, Ordering::Relaxed);
    let kills = killer.await.unwrap();
    assert!(
        kills >= 2,
        "the load ended before the sessions were killed twice"
    );

    let mut acknowledged = Vec::new();
    for (status, code, retry_after, id) in results {
        match status {
            202 => acknowledged.push(id.unwrap()),
            503 => assert!(code.as_deref() == Some("database_busy") && retry_after),
            other => panic!("unexpected {other} {code:?}"),
        }
    }
    assert!(!acknowledged.is_empty());
    // Every acknowledged task is done, once.
    for id in &acknowledged {
        let task = stack.wait_task(id).await;
        assert_eq!(task["status"], "succeeded", "{task}");
    }
    stack.stop().await;
}
