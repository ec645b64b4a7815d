//! The shipped Python client (`clients/python/weir_worker.py`) runs its
//! example worker end to end against `weir up`: results stored, a permanent
//! failure dead after one attempt, the worker listed with its type.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::processes::{listening_url, WeirProcess};

const TOKEN: &str = "py-worker-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_worker_runs_tasks_against_weir_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        "[task_types.word_count]\nhandler = \"external\"\nmax_attempts = 2\n\
         input_schema = { type = \"object\", required = [\"text\"] }\n",
    )
    .unwrap();
    let data = dir.path().join("data").display().to_string();
    let (_up, line) = WeirProcess::start(
        &[
            "up",
            "--listen",
            "127.0.0.1:0",
            "--config",
            &config.display().to_string(),
            "--data-dir",
            &data,
            "--worker-token",
            TOKEN,
            "--api-nodes",
            "1",
            "--workers",
            "1",
        ],
        "lb listening on",
    );
    let base = listening_url(&line);
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for input in [
        json!({"text": "the quick brown fox"}),
        json!({"text": "hello"}),
        json!({"text": 7}),
    ] {
        let resp = http
            .post(format!("{base}/tasks"))
            .json(&json!({"type": "word_count", "input": input}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let v: Value = resp.json().await.unwrap();
        ids.push(v["task_id"].as_str().unwrap().to_string());
    }
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../clients/python/example.py"
    );
    let mut python = Command::new("python3")
        .args([
            example,
            "--url",
            &base,
            "--token",
            TOKEN,
            "--worker-id",
            "py-1",
            "--max-tasks",
            "3",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the Python client's test");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = python.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the example worker did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "the example worker failed: {status}");
    let mut done = Vec::new();
    for id in &ids {
        let t: Value = http
            .get(format!("{base}/tasks/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        done.push(t);
    }
    assert_eq!(done[0]["status"], "succeeded", "{}", done[0]);
    assert_eq!(done[0]["result"], json!({"words": 4, "longest": "quick"}));
    assert_eq!(done[0]["worker_id"], "py-1");
    assert_eq!(done[1]["result"]["words"], 1);
    assert_eq!(done[2]["status"], "dead", "{}", done[2]);
    assert_eq!(done[2]["attempts"], 1, "a permanent failure is not retried");
    assert!(done[2]["error"]
        .as_str()
        .unwrap()
        .contains("text must be a string"));
    let workers: Value = http
        .get(format!("{base}/workers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let py = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == "py-1")
        .cloned()
        .expect("the Python worker is listed");
    assert_eq!(py["task_types"], json!(["word_count"]));
}

/// The submitting client (`clients/python/weir_client.py`) builds a
/// Celery-style canvas — a chord, then a chain — as a weir workflow and
/// waits for it, against `weir up`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_runs_a_chord_and_a_chain_as_a_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let (_up, base) = up_with(&data, &[]);
    let printed = run_example("workflow_example.py", &["--url", &base]).await;
    let workflow = &printed["workflow"];
    assert_eq!(workflow["status"], "succeeded", "{workflow}");
    assert_eq!(workflow["name"], "canvas");
    assert_eq!(workflow["steps"].as_array().unwrap().len(), 6);
    let parents = printed["report_input"]["parents"].as_object().unwrap();
    assert_eq!(parents.len(), 3, "{parents:?}");
    assert_eq!(
        parents["hash-a"],
        json!({"md5": "0cc175b9c0f1b6a831c399e269772661"})
    );
    assert_eq!(printed["cycle"], "workflow_cycle");
}

/// A batch from Python: a `weir_worker` step adds a hash per word to its
/// own workflow (`task.add_steps`), and the report after it gets them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_step_adds_a_batch_the_report_waits_for() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let extra = ["--task-type", "split=external", "--worker-token", TOKEN];
    let (_up, base) = up_with(&data, &extra);
    let printed = run_example("batch_example.py", &["--url", &base, "--token", TOKEN]).await;
    let workflow = &printed["workflow"];
    assert_eq!(workflow["status"], "succeeded", "{workflow}");
    assert_eq!(workflow["steps"].as_array().unwrap().len(), 6, "{workflow}");
    assert_eq!(printed["added_twice_same"], true);
    let parents = printed["report_input"]["parents"].as_object().unwrap();
    assert_eq!(parents.len(), 5, "split and four hashes: {parents:?}");
    assert_eq!(
        parents["hash-alpha"],
        json!({"md5": "2c1743a391305fbf367df8e4f069f9f9"})
    );
}

/// `weir up` with `extra` flags (one API node, one worker); its lb's URL.
pub(crate) fn up_with(data: &str, extra: &[&str]) -> (WeirProcess, String) {
    let args = [
        &[
            "up",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--api-nodes",
            "1",
            "--workers",
            "1",
        ][..],
        extra,
    ]
    .concat();
    let (up, line) = WeirProcess::start(&args, "lb listening on");
    (up, listening_url(&line))
}

/// Runs `clients/python/<script>` with `args`; the JSON it printed.
async fn run_example(script: &str, args: &[&str]) -> Value {
    let path = format!(
        "{}/../../clients/python/{script}",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = python(&[&[path.as_str()][..], args].concat()).await;
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Runs `python3 ARGS` to its end, off the runtime's threads.
pub(crate) async fn python(args: &[&str]) -> std::process::Output {
    let python = Command::new("python3")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the Python client's test");
    tokio::task::spawn_blocking(move || python.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}
