//! Buffered ingest through crashes: the worker draining the Redis Stream is
//! killed with SIGKILL while it holds batches it has read but not yet
//! acknowledged; after restarts, every event an API node acknowledged (202)
//! is in PostgreSQL exactly once. Separate processes, real Redis and PostgreSQL.

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_testkit::{PgDatabase, RedisPrefix};

use crate::processes::{listening_url, WeirProcess};
use crate::support::poll;

const BATCHES: usize = 300;
const EVENTS_PER_BATCH: usize = 200;

async fn pending(redis: &RedisPrefix, stream: &str) -> u64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // XPENDING's summary: [count, first id, last id, consumers].
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(weir_ingest::DEFAULT_GROUP)
        .query_async(&mut conn)
        .await
        .unwrap_or(redis::Value::Nil);
    match summary {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        },
        _ => 0,
    }
}

/// A migrated database of the test's own and a Redis key prefix.
async fn migrated_store() -> (PgDatabase, RedisPrefix) {
    let db = PgDatabase::create().await;
    let migrated = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["migrate", "--database-url", db.url()])
        .status()
        .unwrap();
    assert!(migrated.success());
    (db, RedisPrefix::create())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_worker_killed_mid_batch_loses_and_duplicates_nothing() {
    let (db, redis) = migrated_store().await;
    let url = db.url().to_string();
    let stream = redis.key("events");
    let redis_url = redis.url();
    let ingest = [
        "--ingest-mode",
        "buffered",
        "--redis-url",
        redis_url.as_str(),
        "--ingest-stream",
        stream.as_str(),
    ];
    let mut api_args = vec!["api", "--listen", "127.0.0.1:0", "--database-url", &url];
    api_args.extend(ingest);
    let (_api, line) = WeirProcess::start(&api_args, "listening on");
    let base = listening_url(&line);
    let start_worker = |n: usize| {
        let id = format!("ingest-{n}");
        let mut args = vec![
            "worker",
            "--worker-id",
            id.as_str(),
            "--database-url",
            url.as_str(),
            "--ingest-claim-idle",
            "1s",
        ];
        args.extend(ingest);
        WeirProcess::start(&args, "moving buffered events").0
    };

    // Load: batches with unique ids, four at a time; remember what got a 202.
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let http = reqwest::Client::new();
    let load = {
        let acked = acked.clone();
        let base = base.clone();
        tokio::spawn(async move {
            use futures_util::stream::{self, StreamExt};
            stream::iter(0..BATCHES)
                .for_each_concurrent(4, |b| {
                    let (http, acked, base) = (http.clone(), acked.clone(), base.clone());
                    async move {
                        let ids: Vec<String> = (0..EVENTS_PER_BATCH)
                            .map(|i| format!("b{b}-e{i}"))
                            .collect();
                        let body: String = ids
                            .iter()
                            .map(|id| {
                                format!(
                                    "{{\"id\":\"{id}\",\"batch\":{b},\"pad\":\"{}\"}}\n",
                                    "x".repeat(64)
                                )
                            })
                            .collect();
                        let resp = http
                            .post(format!("{base}/write"))
                            .header("content-type", "application/x-ndjson")
                            .body(body)
                            .send()
                            .await;
                        if let Ok(resp) = resp {
                            if resp.status().as_u16() == 202 {
                                acked.lock().unwrap().extend(ids);
                            }
                        }
                    }
                })
                .await;
        })
    };

    // Kill the consumer while it holds read-but-unacknowledged batches.
    let mut generation = 0;
    let mut worker = start_worker(generation);
    let mut killed_holding = 0;
    for _ in 0..12 {
        if killed_holding >= 3 || load.is_finished() {
            break;
        }
        let waited = poll(Duration::from_secs(10), || async {
            (pending(&redis, &stream).await > 0).then_some(())
        });
        if tokio::time::timeout(Duration::from_secs(10), waited)
            .await
            .is_err()
        {
            continue;
        }
        worker.kill();
        if pending(&redis, &stream).await > 0 {
            killed_holding += 1;
        }
        generation += 1;
        worker = start_worker(generation);
    }
    load.await.unwrap();
    eprintln!(
        "killed the consumer {killed_holding} times while it held batches ({generation} kills)"
    );
    assert!(
        killed_holding >= 1,
        "no kill caught the consumer holding unacknowledged batches"
    );
    let acked: HashSet<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= EVENTS_PER_BATCH * BATCHES / 2,
        "too few writes accepted: {}",
        acked.len()
    );

    // The live worker takes over what the dead ones held.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    poll(Duration::from_secs(60), || async {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&pool)
            .await
            .ok()?;
        (n as usize >= acked.len()).then_some(())
    })
    .await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT id FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    let distinct: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(distinct.len(), stored.len(), "an event was stored twice");
    let missing: Vec<&String> = acked.difference(&distinct).take(5).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    // Only acknowledged events (no 202, no promise; but all got 202 here).
    assert_eq!(stored.len(), acked.len());
    pool.close().await;
    worker.terminate();
}

/// `weir worker --ingest-consumers N` runs N consumers of the stream (it
/// ran one whatever N said, so its drain used one database connection
/// where `weir up` used two). A backlog is waiting when it starts, so every
/// consumer is given entries and shows in the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_as_many_stream_consumers_as_it_is_told() {
    let (db, redis) = migrated_store().await;
    let url = db.url().to_string();
    let stream = redis.key("events");
    let redis_url = redis.url();
    let buffer = weir_ingest::EventBuffer::connect(&redis_url, &stream, 100_000)
        .await
        .unwrap();
    for batch in 0..600 {
        let event = weir_core::NewEvent {
            id: format!("backlog-{batch}"),
            body: format!(r#"{{"batch":{batch}}}"#),
            received_at: chrono::Utc::now(),
        };
        buffer.append(&[event]).await.unwrap();
    }
    let (_worker, line) = WeirProcess::start(
        &[
            "worker",
            "--worker-id",
            "drain",
            "--database-url",
            &url,
            "--ingest-mode",
            "buffered",
            "--redis-url",
            &redis_url,
            "--ingest-stream",
            &stream,
            "--ingest-consumers",
            "3",
        ],
        "moving buffered events",
    );
    assert!(line.contains("(3 consumers)"), "{line}");
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let names = poll(Duration::from_secs(20), || {
        let mut conn = conn.clone();
        let stream = stream.clone();
        async move {
            let consumers: Vec<std::collections::HashMap<String, redis::Value>> =
                redis::cmd("XINFO")
                    .arg("CONSUMERS")
                    .arg(&stream)
                    .arg(weir_ingest::DEFAULT_GROUP)
                    .query_async(&mut conn)
                    .await
                    .ok()?;
            let mut names: Vec<String> = consumers
                .iter()
                .filter_map(|c| redis::from_redis_value(c.get("name")?.clone()).ok())
                .collect();
            names.sort();
            (names.len() == 3).then_some(names)
        }
    })
    .await;
    assert_eq!(names, ["drain/1", "drain/2", "drain/3"]);
}
