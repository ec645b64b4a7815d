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
            503 => assert!(
                code.as_deref() == Some("database_busy") && retry_after,
                "503 {code:?}, Retry-After: {retry_after}"
            ),
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

/// PostgreSQL restarted under load, with weir as separate processes: while
/// it is down, submissions get `503 database_busy` with Retry-After (no
/// other error, no hang); once it is back the processes reconnect by
/// themselves, and every task acknowledged before, during or after the
/// outage completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_answers_503_then_recovers_losing_nothing() {
    use crate::processes::{start_api_and_worker, start_lb, wait_all_succeeded};
    let pg = weir_testkit::RestartablePostgres::start();
    let url = pg.url.clone();
    let migrate = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["migrate", "--database-url", &url])
        .status()
        .unwrap();
    assert!(migrate.success());
    let (api, worker, backend) = start_api_and_worker(&url);
    let (lb, base) = start_lb(&backend);

    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let answers = Arc::new(std::sync::Mutex::new(HashMap::<String, usize>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (acked, answers, stop, base) =
            (acked.clone(), answers.clone(), stop.clone(), base.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let (status, code, retry_after, id) =
                    submit(&http, &base, &format!("pg-restart-{c}-{i}")).await;
                let kind = match (status, code.as_deref(), retry_after) {
                    (202, ..) => "accepted".to_string(),
                    (503, Some("database_busy"), true) => "database_busy".to_string(),
                    other => format!("{other:?}"),
                };
                *answers.lock().unwrap().entry(kind).or_default() += 1;
                if let Some(id) = id.filter(|_| status == 202) {
                    acked.lock().unwrap().push(id);
                }
                if status == 503 {
                    // Client pacing, not a wait for a condition: a client
                    // told to retry later does not hammer the node.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    let count = |kind: &str| answers.lock().unwrap().get(kind).copied().unwrap_or(0);
    poll(Duration::from_secs(30), || async {
        (count("accepted") >= 100).then_some(())
    })
    .await;
    tokio::task::block_in_place(|| pg.stop());
    poll(Duration::from_secs(60), || async {
        (count("database_busy") >= 4).then_some(())
    })
    .await;
    let before_resume = count("accepted");
    tokio::task::block_in_place(|| pg.resume());
    poll(Duration::from_secs(60), || async {
        (count("accepted") >= before_resume + 100).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let seen = answers.lock().unwrap().clone();
    let unexpected: Vec<_> = seen
        .iter()
        .filter(|(k, _)| *k != "accepted" && *k != "database_busy")
        .collect();
    assert!(unexpected.is_empty(), "other answers: {seen:?}");

    let ids = acked.lock().unwrap().clone();
    wait_all_succeeded(&base, &ids).await;
    eprintln!(
        "answers through the restart: {seen:?}; all {} acknowledged tasks succeeded",
        ids.len()
    );
    drop((api, worker, lb));
}
