//! Workers that die: a worker killed with SIGKILL loses its leases, another
//! worker runs its task again within lease + rescue interval, and the dead
//! worker shows as offline. On SQLite and on PostgreSQL, as separate processes.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::processes::{listening_url, worker_row, WeirProcess};
use crate::support::{poll, SharedDb, StoreKind};

async fn worker_killed_mid_task_is_rescued(store: StoreKind) {
    let db = SharedDb::create(store).await;
    let url = db.url.clone();
    let migrated = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["migrate", "--database-url", &url])
        .status()
        .unwrap();
    assert!(migrated.success());
    let (api, line) = WeirProcess::start(
        &[
            "api",
            "--listen",
            "127.0.0.1:0",
            "--node-id",
            "api-1",
            "--database-url",
            &url,
            "--worker-offline-after",
            "2s",
        ],
        "listening on",
    );
    let base = listening_url(&line);
    let worker = |id: &str| {
        WeirProcess::start(
            &[
                "worker",
                "--worker-id",
                id,
                "--database-url",
                &url,
                "--lease",
                "2s",
                "--rescue-interval",
                "500ms",
            ],
            "running up to",
        )
        .0
    };
    let doomed = worker("doomed");
    let http = reqwest::Client::new();
    let accepted: Value = http
        .post(format!("{base}/tasks"))
        .json(&json!({"type": "sleep", "input": {"ms": 3000}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["task_id"].as_str().unwrap().to_string();
    let task_url = format!("{base}/tasks/{id}");
    poll(Duration::from_secs(20), || async {
        let t: Value = http.get(&task_url).send().await.ok()?.json().await.ok()?;
        (t["status"] == "running" && t["worker_id"] == "doomed").then_some(())
    })
    .await;

    doomed.kill();
    let _rescuer = worker("rescuer");
    let done = poll(Duration::from_secs(30), || async {
        let t: Value = http.get(&task_url).send().await.ok()?.json().await.ok()?;
        (t["status"] == "succeeded").then_some(t)
    })
    .await;
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(done["worker_id"], "rescuer", "{done}");
    // The lost attempt is on record.
    assert_eq!(done["errors"][0]["worker_id"], "doomed", "{done}");
    assert!(
        done["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("lease expired"),
        "{done}"
    );

    poll(Duration::from_secs(30), || async {
        let doomed = worker_row(&http, &base, "doomed").await?;
        (doomed["status"] == "offline").then_some(())
    })
    .await;
    api.terminate();
}

/// SIGTERM: the worker stops claiming, lets its task run out the grace
/// period, hands it back unfinished (the attempt not counted), goes offline and
/// exits 0; another worker runs the task.
async fn drained_worker_hands_its_task_back(store: StoreKind) {
    let db = SharedDb::create(store).await;
    let url = db.url.clone();
    let (api, line) = WeirProcess::start(
        &[
            "api",
            "--listen",
            "127.0.0.1:0",
            "--node-id",
            "api-1",
            "--database-url",
            &url,
        ],
        "listening on",
    );
    let base = listening_url(&line);
    let (drainer, _) = WeirProcess::start(
        &[
            "worker",
            "--worker-id",
            "drainer",
            "--database-url",
            &url,
            "--shutdown-grace",
            "300ms",
        ],
        "running up to",
    );
    let http = reqwest::Client::new();
    let accepted: Value = http
        .post(format!("{base}/tasks"))
        .json(&json!({"type": "sleep", "input": {"ms": 5000}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task_url = format!("{base}/tasks/{}", accepted["task_id"].as_str().unwrap());
    poll(Duration::from_secs(20), || async {
        let t: Value = http.get(&task_url).send().await.ok()?.json().await.ok()?;
        (t["status"] == "running").then_some(())
    })
    .await;
    drainer.terminate(); // asserts exit code 0
    let t: Value = http
        .get(&task_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (t["status"].as_str(), t["attempts"].as_i64()),
        (Some("queued"), Some(0)),
        "{t}"
    );
    let w: Value = http
        .get(format!("{base}/workers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(w["workers"][0]["status"], "offline", "{w}");

    let (_next, _) = WeirProcess::start(
        &["worker", "--worker-id", "next", "--database-url", &url],
        "running up to",
    );
    let done = poll(Duration::from_secs(30), || async {
        let t: Value = http.get(&task_url).send().await.ok()?.json().await.ok()?;
        (t["status"] == "succeeded").then_some(t)
    })
    .await;
    assert_eq!(
        (done["attempts"].as_i64(), done["worker_id"].as_str()),
        (Some(1), Some("next")),
        "{done}"
    );
    api.terminate();
}

crate::for_each_store!(
    worker_killed_mid_task_is_rescued,
    drained_worker_hands_its_task_back
);
