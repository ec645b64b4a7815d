//! Queues at runtime, through the lb: a paused queue is claimed by no
//! worker, built-in or external (an external worker's held claim waits and
//! is answered at the resume), `weir status` and `GET /queues` say it is
//! paused, and `PUT /queues/{name}` limits it for the running workers.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{poll, Stack, StackOptions, StoreKind};

const WORKER_TOKEN: &str = "queues-runtime-worker-token";

fn queue<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {list}"))
}

async fn a_paused_queue_waits_for_its_resume(store: StoreKind) {
    let types = crate::task_types::types(&[("mail", json!({"handler": "external"}))]);
    let stack = Stack::start(StackOptions {
        task_types: Some(types),
        worker_token: Some(WORKER_TOKEN.into()),
        ..StackOptions::on(store)
    })
    .await;
    let (status, paused) = stack.post_json("/queues/emails/pause", &json!({})).await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["paused"], true);
    // Built-in workers leave it alone; other queues run.
    let (_, held) = stack
        .post_json(
            "/tasks",
            &json!({"type": "md5", "input": {"string": "held"}, "queue": "emails"}),
        )
        .await;
    let held_task = held["task_id"].as_str().unwrap().to_string();
    let (_, free) = stack
        .post_json(
            "/tasks",
            &json!({"type": "md5", "input": {"string": "free"}}),
        )
        .await;
    let free = stack.wait_task(free["task_id"].as_str().unwrap()).await;
    assert_eq!(free["status"], "succeeded");
    let (_, listed) = stack.get_json("/queues").await;
    let emails = queue(&listed, "emails");
    assert_eq!(
        (emails["paused"].as_bool(), emails["queued"].as_i64()),
        (Some(true), Some(1))
    );
    assert!(emails["oldest_queued_at"].is_string(), "{emails}");
    let (_, task) = stack.get_json(&format!("/tasks/{held_task}")).await;
    assert_eq!(task["status"], "queued", "{task}");

    // An external worker's claim on the paused queue is held its whole
    // wait and answered empty; one held over the resume gets its task.
    let (_, mail) = stack
        .post_json(
            "/tasks",
            &json!({"type": "mail", "input": {"to": "a@b.c"}, "queue": "emails"}),
        )
        .await;
    let mail = mail["task_id"].as_str().unwrap().to_string();
    let claim = |wait: &'static str| {
        let http = stack.http.clone();
        let url = stack.url("/workers/ext/claim");
        tokio::spawn(async move {
            let started = Instant::now();
            let answer: Value = http
                .post(url)
                .bearer_auth(WORKER_TOKEN)
                .json(&json!({"types": ["mail"], "wait": wait, "queues": ["emails"]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (started.elapsed(), answer)
        })
    };
    let (waited, answer) = claim("1s").await.unwrap();
    assert_eq!(
        answer["tasks"],
        json!([]),
        "a claim on a paused queue got {answer}"
    );
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    let held = claim("20s");
    let resumed_at = Instant::now();
    let (status, resumed) = stack.post_json("/queues/emails/resume", &json!({})).await;
    assert_eq!((status, resumed["paused"].as_bool()), (200, Some(false)));
    let (_, answer) = held.await.unwrap();
    assert_eq!(answer["tasks"][0]["id"], mail.as_str(), "{answer}");
    assert!(
        resumed_at.elapsed() < Duration::from_secs(2),
        "the held claim was not woken by the resume"
    );
    let held = stack.wait_task(&held_task).await;
    assert_eq!(held["status"], "succeeded", "{held}");
    stack.stop().await;
}

async fn limits_set_at_runtime_hold_for_the_running_workers(store: StoreKind) {
    let stack = Stack::start(StackOptions {
        workers: 2,
        ..StackOptions::on(store)
    })
    .await;
    for bad in [
        json!({"concurrency": 0}),
        json!({"rate_per_second": -1.0}),
        json!({"concurrency": "two"}),
    ] {
        let resp = stack
            .http
            .put(stack.url("/queues/reports"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
    let resp = stack
        .http
        .put(stack.url("/queues/reports"))
        .json(&json!({"concurrency": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let set: Value = resp.json().await.unwrap();
    assert_eq!(set["concurrency"], 1, "{set}");
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (_, t) = stack
            .post_json(
                "/tasks",
                &json!({"type": "sleep", "input": {"ms": 250}, "queue": "reports"}),
            )
            .await;
        ids.push(t["task_id"].as_str().unwrap().to_string());
    }
    // Never two at once, across both workers.
    poll(Duration::from_secs(30), || async {
        let (_, listed) = stack.get_json("/queues").await;
        let reports = queue(&listed, "reports");
        assert!(reports["running"].as_i64() <= Some(1), "{reports}");
        (reports["queued"] == 0 && reports["running"] == 0).then_some(())
    })
    .await;
    for id in &ids {
        assert_eq!(stack.wait_task(id).await["status"], "succeeded");
    }
    // Its throughput: the four in the last minute.
    let (_, listed) = stack.get_json("/queues").await;
    assert_eq!(
        queue(&listed, "reports")["succeeded_last_minute"],
        4,
        "{listed}"
    );
    stack.stop().await;
}

crate::for_each_store!(
    a_paused_queue_waits_for_its_resume,
    limits_set_at_runtime_hold_for_the_running_workers,
);

/// `weir queues` over the HTTP API: pause, list (table and JSON), set
/// limits, resume; a refusal exits non-zero with weir's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queues_command_pauses_lists_sets_and_resumes() {
    let stack = Stack::start(StackOptions::on(StoreKind::Sqlite)).await;
    let target = stack.url("");
    let target = target.trim_end_matches('/').to_string();
    let weir = move |args: &[&str]| {
        let mut all = vec!["queues", "--target", target.as_str()];
        all.extend_from_slice(args);
        crate::processes::run_weir(&all)
    };
    let out = tokio::task::spawn_blocking({
        let weir = weir.clone();
        move || {
            let paused = weir(&["pause", "emails"]);
            assert!(paused.status.success(), "{paused:?}");
            let table = String::from_utf8_lossy(&weir(&["list"]).stdout).into_owned();
            let set = weir(&["set", "reports", "--concurrency", "2", "--json"]);
            let bad = weir(&["set", "reports", "--concurrency", "0"]);
            let listed = weir(&["list", "--json"]);
            let resumed = weir(&["resume", "emails"]);
            (table, set, bad, listed, resumed)
        }
    })
    .await
    .unwrap();
    let (table, set, bad, listed, resumed) = out;
    let emails = table
        .lines()
        .find(|l| l.starts_with("emails"))
        .unwrap_or_default();
    assert!(emails.contains("paused"), "{table}");
    let set: Value = serde_json::from_slice(&set.stdout).unwrap();
    assert_eq!(set["concurrency"], 2, "{set}");
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("400 invalid_limits"), "{said}");
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(queue(&listed, "reports")["concurrency"], 2, "{listed}");
    assert_eq!(queue(&listed, "emails")["paused"], true, "{listed}");
    assert!(resumed.status.success(), "{resumed:?}");
    // Resumed, without tasks or limits, it is no longer listed.
    let (_, now) = stack.get_json("/queues").await;
    let names: Vec<&str> = now["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(names, ["reports"], "{now}");
    stack.stop().await;
}
