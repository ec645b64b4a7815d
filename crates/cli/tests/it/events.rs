//! Event ingest: `POST /write` in its three shapes, its precise refusals,
//! ids that make a batch sent twice a no-op, `GET /messages`, and buffered
//! mode through a real Redis Stream (bounded, drained by the workers).

use std::time::Duration;

use serde_json::{json, Value};
use weir_testkit::RedisPrefix;

use crate::support::{poll, Stack, StackOptions, StoreKind};

async fn write(stack: &Stack, body: &str, content_type: &str) -> (u16, Value) {
    let resp = stack
        .http
        .post(stack.url("/write"))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn count(stack: &Stack) -> i64 {
    let (status, body) = stack.get_json("/messages/count").await;
    assert_eq!(status, 200, "{body}");
    body["count"].as_i64().unwrap()
}

async fn write_accepts_an_object_an_array_and_ndjson(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    let (status, body) = write(&stack, r#"{"id":"one","level":"info"}"#, "application/json").await;
    assert_eq!((status, body), (202, json!({"accepted": 1})));
    let (status, body) = write(&stack, r#"[{"n":1},{"n":2},{"n":3}]"#, "application/json").await;
    assert_eq!((status, body), (202, json!({"accepted": 3})));
    let nd = "{\"n\":4}\n{\"n\":5}\n\n{\"n\":6}\n";
    let (status, body) = write(&stack, nd, "application/x-ndjson").await;
    assert_eq!((status, body), (202, json!({"accepted": 3})));
    // 202 means committed: visible at once.
    assert_eq!(count(&stack).await, 7);
    let (status, latest) = stack.get_json("/messages?n=4").await;
    assert_eq!(status, 200);
    let latest = latest["messages"].as_array().unwrap().clone();
    let ns: Vec<i64> = latest
        .iter()
        .map(|m| m["event"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [6, 5, 4, 3], "newest first: {latest:?}");
    let (_, all) = stack.get_json("/messages?n=1000").await;
    let all = all["messages"].as_array().unwrap().clone();
    let first = all.last().unwrap();
    assert_eq!(first["id"], "one");
    assert_eq!(first["event"], json!({"id": "one", "level": "info"}));
    assert!(first["received_at"].is_string());
    stack.stop().await;
}

async fn write_rejects_bad_input_and_stores_nothing(store: StoreKind) {
    let mut opts = StackOptions::on(store);
    opts.max_write_bytes = 4096;
    opts.max_write_events = 10;
    let stack = Stack::start(opts).await;
    let cases: Vec<(&str, String, &str, u16, &str)> = vec![
        (
            "json",
            "[{\"a\":1},\n{\"a\": nope}]".into(),
            "application/json",
            400,
            "invalid_json",
        ),
        (
            "ndjson",
            "{\"a\":1}\n{\"a\":1}\n{\"a\":".into(),
            "application/x-ndjson",
            400,
            "invalid_json",
        ),
        (
            "not an object",
            r#"[{"a":1}, [1]]"#.into(),
            "application/json",
            400,
            "invalid_event",
        ),
        (
            "bad id",
            r#"[{"a":1}, {"id":true}]"#.into(),
            "application/json",
            400,
            "invalid_event_id",
        ),
        (
            "empty",
            "  ".into(),
            "application/json",
            400,
            "missing_body",
        ),
        (
            "too big",
            format!(
                "[{}]",
                vec![r#"{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#; 100].join(",")
            ),
            "application/json",
            413,
            "payload_too_large",
        ),
        (
            "too many",
            "{}\n".repeat(11),
            "application/x-ndjson",
            413,
            "too_many_events",
        ),
    ];
    for (what, body, content_type, want_status, want_code) in cases {
        let (status, answer) = write(&stack, &body, content_type).await;
        assert_eq!(status, want_status, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], want_code, "{what}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().len() > 5,
            "{what}: {answer}"
        );
    }
    // Syntax errors say where.
    let (_, answer) = write(
        &stack,
        "{\"a\":1}\n{\"a\":1}\n{\"a\":",
        "application/x-ndjson",
    )
    .await;
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("line 3"), "{message}");
    let (_, answer) = write(&stack, "[{\"a\":1},\n{\"a\": nope}]", "application/json").await;
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("line 2, column"), "{message}");
    // A batch with one bad event wrote none of its good ones.
    assert_eq!(count(&stack).await, 0);
    for bad in ["/messages?n=0", "/messages?n=1001", "/messages?n=x"] {
        let (status, answer) = stack.get_json(bad).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_query", "{bad}");
    }
    stack.stop().await;
}

async fn a_batch_sent_again_is_stored_once(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    // Client ids.
    let body = r#"[{"id":"a","v":1},{"id":"b","v":2},{"id":42,"v":3}]"#;
    for _ in 0..3 {
        let (status, answer) = write(&stack, body, "application/json").await;
        assert_eq!((status, answer), (202, json!({"accepted": 3})));
    }
    assert_eq!(count(&stack).await, 3);
    // No ids, but an Idempotency-Key: the retry gets the same ids.
    for _ in 0..2 {
        let resp = stack
            .http
            .post(stack.url("/write"))
            .header("idempotency-key", "batch-7")
            .header("content-type", "application/x-ndjson")
            .body("{\"v\":10}\n{\"v\":11}\n")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
    }
    assert_eq!(count(&stack).await, 5);
    // The same key with another batch is refused, not dropped as a repeat.
    let reused = stack
        .http
        .post(stack.url("/write"))
        .header("idempotency-key", "batch-7")
        .header("content-type", "application/x-ndjson")
        .body("{\"v\":10}\n{\"v\":12}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status().as_u16(), 422);
    let reused: Value = reused.json().await.unwrap();
    assert_eq!(
        reused["error"]["code"], "idempotency_key_reused",
        "{reused}"
    );
    assert_eq!(count(&stack).await, 5);
    // Without either, the same body twice is two sets of events.
    for _ in 0..2 {
        write(&stack, r#"{"v":99}"#, "application/json").await;
    }
    assert_eq!(count(&stack).await, 7);
    stack.stop().await;
}

crate::for_each_store!(
    write_accepts_an_object_an_array_and_ndjson,
    write_rejects_bad_input_and_stores_nothing,
    a_batch_sent_again_is_stored_once,
);

fn buffer(redis: &RedisPrefix, max_len: u64) -> weir_ingest::BufferConfig {
    let mut b = weir_ingest::BufferConfig::new(redis.url());
    b.stream = redis.key("events");
    b.max_len = max_len;
    b.claim_idle = Duration::from_secs(1);
    b
}

async fn stream_len(redis: &RedisPrefix) -> u64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("XLEN")
        .arg(redis.key("events"))
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_writes_reach_postgres_through_redis() {
    let redis = RedisPrefix::create();
    let mut opts = StackOptions::on(StoreKind::Postgres);
    opts.ingest_buffer = Some(buffer(&redis, 10_000));
    let stack = Stack::start(opts).await;
    let mut sent = 0;
    for batch in 0..20 {
        let body: String = (0..50)
            .map(|i| format!("{{\"id\":\"e-{batch}-{i}\",\"batch\":{batch}}}\n"))
            .collect();
        let (status, answer) = write(&stack, &body, "application/x-ndjson").await;
        assert_eq!((status, answer), (202, json!({"accepted": 50})));
        sent += 50;
    }
    poll(Duration::from_secs(30), || async {
        (count(&stack).await == sent).then_some(())
    })
    .await;
    // Committed entries are acknowledged and deleted: the backlog is empty.
    poll(Duration::from_secs(10), || async {
        (stream_len(&redis).await == 0).then_some(())
    })
    .await;
    let (_, latest) = stack.get_json("/messages?n=1").await;
    assert_eq!(latest["messages"][0]["event"]["batch"], 19);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_stream_full_answers_503_and_loses_nothing() {
    let redis = RedisPrefix::create();
    let mut opts = StackOptions::on(StoreKind::Postgres);
    // No workers: nothing drains the stream.
    opts.workers = 0;
    opts.ingest_buffer = Some(buffer(&redis, 3));
    let stack = Stack::start(opts).await;
    for i in 0..3 {
        let (status, _) = write(&stack, &format!(r#"{{"id":"k{i}"}}"#), "application/json").await;
        assert_eq!(status, 202);
    }
    let resp = stack
        .http
        .post(stack.url("/write"))
        .body(r#"{"id":"k3"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "ingest_buffer_full", "{answer}");
    assert_eq!(stream_len(&redis).await, 3);
    assert_eq!(
        count(&stack).await,
        0,
        "buffered: nothing in the database yet"
    );
    // A consumer drains what was acknowledged; the refused batch is not there.
    let stop = tokio_util::sync::CancellationToken::new();
    let consumer = tokio::spawn(weir_ingest::consumer::run(
        stack.store.clone(),
        buffer(&redis, 3).consumer("late-worker"),
        stop.clone(),
    ));
    poll(Duration::from_secs(20), || async {
        (count(&stack).await == 3).then_some(())
    })
    .await;
    let (_, all) = stack.get_json("/messages?n=10").await;
    let mut ids: Vec<String> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["k0", "k1", "k2"]);
    // Room again.
    poll(Duration::from_secs(10), || async {
        (stream_len(&redis).await == 0).then_some(())
    })
    .await;
    let (status, _) = write(&stack, r#"{"id":"k3"}"#, "application/json").await;
    assert_eq!(status, 202);
    stop.cancel();
    let report = consumer.await.unwrap().unwrap();
    assert!(report.events >= 3, "{report:?}");
    stack.stop().await;
}
