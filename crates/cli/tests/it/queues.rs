//! Scheduling a submission controls, through the whole stack: a queue limited
//! to one running task never runs two at once across three workers, nor does
//! a concurrency key; a submission's own backoff beats the workers'; a
//! cacheable input already queued is not queued twice; all are shown on the
//! task; bad values are refused.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::support::{Stack, StackOptions, StoreKind};

/// (started, completed) of each finished task.
fn spans(tasks: &[Value]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut spans: Vec<_> = tasks
        .iter()
        .map(|t| {
            let at = |f: &str| t[f].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
            (at("started_at"), at("completed_at"))
        })
        .collect();
    spans.sort();
    spans
}

/// Whether no two spans overlap by more than clock slack: `started_at` is
/// taken by the claiming worker just before its claim, `completed_at` by the
/// finishing worker just before its write, so a claim that (correctly) waited
/// for a completion can carry an earlier time. Real double runs of these
/// 300 ms tasks would overlap by far more.
fn never_overlap(spans: &[(DateTime<Utc>, DateTime<Utc>)]) -> bool {
    let slack = chrono::Duration::milliseconds(60);
    spans.windows(2).all(|w| w[0].1 - slack <= w[1].0)
}

async fn submit(stack: &Stack, body: Value) -> String {
    let (status, answer) = stack.post_json("/tasks", &body).await;
    assert_eq!(status, 202, "{answer}");
    answer["task_id"].as_str().unwrap().to_string()
}

async fn a_limited_queue_and_a_concurrency_key_run_one_at_a_time(store: StoreKind) {
    let mut opts = StackOptions::on(store);
    opts.queue_limits = vec![weir_core::QueueLimits {
        name: "serial".into(),
        concurrency: Some(1),
        rate_per_second: None,
        burst: None,
        paused: false,
    }];
    let stack = Stack::start(opts).await;
    let mut serial = Vec::new();
    let mut keyed = Vec::new();
    let mut free = Vec::new();
    for i in 0..4 {
        serial.push(
            submit(
                &stack,
                json!({"type": "sleep", "input": {"ms": 300}, "queue": "serial"}),
            )
            .await,
        );
        keyed.push(
            submit(
                &stack,
                json!({"type": "sleep", "input": {"ms": 300}, "concurrency_key": "tenant-7"}),
            )
            .await,
        );
        free.push(submit(&stack, json!({"type": "sleep", "input": {"ms": 300 + i}})).await);
    }
    let mut done = Vec::new();
    for ids in [&serial, &keyed, &free] {
        let mut tasks = Vec::new();
        for id in ids {
            let t = stack.wait_task(id).await;
            assert_eq!(t["status"], "succeeded", "{t}");
            tasks.push(t);
        }
        done.push(tasks);
    }
    assert!(done[0].iter().all(|t| t["queue"] == "serial"));
    assert!(done[1]
        .iter()
        .all(|t| t["concurrency_key"] == "tenant-7" && t["queue"] == "default"));
    assert!(
        never_overlap(&spans(&done[0])),
        "the serial queue ran two at once: {:?}",
        spans(&done[0])
    );
    assert!(
        never_overlap(&spans(&done[1])),
        "tenant-7 ran two at once: {:?}",
        spans(&done[1])
    );
    // Unlimited tasks do overlap (3 workers × 4 slots): the limits are what serialised the others.
    assert!(
        !never_overlap(&spans(&done[2])),
        "free tasks never overlapped"
    );
    stack.stop().await;
}

async fn bad_queue_names_and_keys_are_refused(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    for (body, code) in [
        (
            json!({"type": "noop", "input": {}, "queue": "no spaces"}),
            "invalid_queue",
        ),
        (
            json!({"type": "noop", "input": {}, "queue": ""}),
            "invalid_queue",
        ),
        (
            json!({"type": "noop", "input": {}, "queue": "x".repeat(65)}),
            "invalid_queue",
        ),
        (
            json!({"type": "noop", "input": {}, "concurrency_key": ""}),
            "invalid_concurrency_key",
        ),
        (
            json!({"type": "noop", "input": {}, "queue": 5}),
            "invalid_input",
        ),
    ] {
        let (status, answer) = stack.post_json("/tasks", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
    }
    stack.stop().await;
}

async fn a_submissions_backoff_beats_the_workers(store: StoreKind) {
    let mut opts = StackOptions::on(store);
    // Workers wait up to an hour between attempts unless told otherwise.
    opts.retry = Some(weir_core::RetryPolicy {
        base: std::time::Duration::from_secs(3600),
        cap: std::time::Duration::from_secs(3600),
    });
    let stack = Stack::start(opts).await;
    let id = submit(
        &stack,
        json!({"type": "flaky", "input": {"fail_times": 2}, "max_attempts": 3,
               "retry_backoff": "5ms:10ms"}),
    )
    .await;
    let t = stack.wait_task(&id).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["attempts"], 3, "{t}");
    assert_eq!(
        t["retry_backoff"],
        json!({"base_ms": 5, "cap_ms": 10}),
        "{t}"
    );
    assert_eq!(t["errors"].as_array().unwrap().len(), 2, "{t}");
    stack.stop().await;
}

async fn a_cacheable_input_already_queued_is_not_queued_again(store: StoreKind) {
    let mut opts = StackOptions::on(store);
    opts.workers = 0;
    let stack = Stack::start(opts).await;
    let body = json!({"type": "md5", "input": {"string": "dup"}});
    let (status, first) = stack.post_json("/tasks", &body).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = stack
        .post_json("/hash/md5", &json!({"string": "dup"}))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["task_id"], first["task_id"], "{again}");
    assert_eq!(again["deduplicated"], true, "{again}");
    assert_eq!(again["status"], "queued", "{again}");
    let (_, counts) = stack.get_json("/tasks/stats").await;
    assert_eq!(counts["queued"], 1, "{counts}");
    let default = &counts["queues"][0];
    assert_eq!(
        counts["queues"].as_array().map(Vec::len),
        Some(1),
        "{counts}"
    );
    for (field, want) in [
        ("name", json!("default")),
        ("queued", json!(1)),
        ("running", json!(0)),
        ("paused", json!(false)),
        ("concurrency", json!(null)),
        ("rate_per_second", json!(null)),
    ] {
        assert_eq!(default[field], want, "{field}: {counts}");
    }
    assert!(default["oldest_queued_at"].is_string(), "{counts}");
    // Another input is its own task.
    let (status, other) = stack
        .post_json(
            "/tasks",
            &json!({"type": "md5", "input": {"string": "dup2"}}),
        )
        .await;
    assert_eq!(status, 202, "{other}");
    assert_ne!(other["task_id"], first["task_id"]);
    stack.stop().await;
}

crate::for_each_store!(
    a_cacheable_input_already_queued_is_not_queued_again,
    a_limited_queue_and_a_concurrency_key_run_one_at_a_time,
    bad_queue_names_and_keys_are_refused,
    a_submissions_backoff_beats_the_workers,
);
