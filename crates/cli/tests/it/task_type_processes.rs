//! Task types across separate `weir` processes: a bad `[task_types]` entry
//! stops a role at start with one line naming the key, and a worker killed
//! mid-delivery loses nothing — another worker delivers again.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::processes::{listening_url, WeirProcess};
use crate::support::{poll, SharedDb, StoreKind};
use crate::task_types::Receiver;

/// Runs `weir ARGS` expecting it to refuse to start; returns stderr.
fn refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} started");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn a_bad_task_type_stops_start_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("w.db").display());
    let cases = [
        (
            "[task_types.deliver]\nhandler = \"http\"\n",
            "task_types.deliver.url",
        ),
        (
            "[task_types.deliver]\nhandler = \"http\"\nurl = \"http://x\"\nurll = 1\n",
            "task_types.deliver: unknown field `urll`",
        ),
        (
            "[task_types.thumb]\nhandler = \"command\"\ncommand = [\"x\"]\ntimeout = \"later\"\n",
            "task_types.thumb.timeout",
        ),
        (
            "[task_types.r]\nhandler = \"external\"\ninput_schema = { type = 5 }\n",
            "task_types.r.input_schema",
        ),
        // Regression: a top-level typo was silently ignored.
        ("max-in-fligth = 3\n", "max-in-fligth: no such setting"),
    ];
    for (i, (toml, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&path, toml).unwrap();
        let path = path.display().to_string();
        for role in ["api", "worker"] {
            let stderr = refused(&[role, "--config", &path, "--database-url", &db]);
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(lines.len(), 1, "{role} {toml}: {stderr}");
            assert!(lines[0].contains(key), "{role}: want {key} in {stderr}");
        }
    }
    let stderr = refused(&[
        "api",
        "--task-type",
        "hook=http:ftp://x",
        "--database-url",
        &db,
    ]);
    assert!(
        stderr.contains("--task-type") && stderr.contains("ftp://x"),
        "{stderr}"
    );
}

async fn a_worker_killed_mid_delivery_is_delivered_again(store: StoreKind) {
    let (receiver, receiver_url) = Receiver::start().await;
    let db = SharedDb::create(store).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!(
            "[task_types.deliver]\nhandler = \"http\"\nurl = \"{receiver_url}/hold\"\n\
             retry_backoff = \"10ms:100ms\"\n"
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let url = db.url.clone();
    let (_api, line) = WeirProcess::start(
        &[
            "api",
            "--config",
            &config,
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &url,
        ],
        "listening on",
    );
    let base = listening_url(&line);
    let worker = |id: &str| {
        WeirProcess::start(
            &[
                "worker",
                "--config",
                &config,
                "--worker-id",
                id,
                "--database-url",
                &url,
                "--lease",
                "2s",
                "--rescue-interval",
                "300ms",
            ],
            "running up to",
        )
        .0
    };
    let doomed = worker("doomed");
    let http = reqwest::Client::new();
    let accepted: Value = http
        .post(format!("{base}/tasks"))
        .json(&json!({"type": "deliver", "input": {"order": 9}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["task_id"].as_str().unwrap().to_string();
    poll(Duration::from_secs(20), || async {
        (!receiver.deliveries_of(&id).is_empty()).then_some(())
    })
    .await;
    doomed.kill();
    let _next = worker("next");
    let task_url = format!("{base}/tasks/{id}");
    let done = poll(Duration::from_secs(30), || async {
        let t: Value = http.get(&task_url).send().await.ok()?.json().await.ok()?;
        (t["status"] == "succeeded").then_some(t)
    })
    .await;
    assert_eq!(
        (done["attempts"].as_i64(), done["worker_id"].as_str()),
        (Some(2), Some("next")),
        "{done}"
    );
    let deliveries = receiver.deliveries_of(&id);
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries
        .iter()
        .all(|d| d.headers["idempotency-key"] == id.as_str()));
    assert_eq!(deliveries[1].headers["weir-attempt"], "2");
}

crate::for_each_store!(a_worker_killed_mid_delivery_is_delivered_again);
