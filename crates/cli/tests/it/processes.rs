//! weir as separate processes — 1 lb, 3 API nodes, 3 workers — sharing one
//! PostgreSQL database, as it runs across machines.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use weir_testkit::PgDatabase;

use crate::support::poll;

/// One `weir` process; SIGKILLed on drop if still running.
pub struct WeirProcess {
    child: Child,
    lines: Receiver<String>,
    /// Its log lines (stderr), when started with [`WeirProcess::start_logging`].
    pub logs: Option<Receiver<String>>,
}

impl WeirProcess {
    /// Starts `weir ARGS` and waits until it prints a line containing `ready_marker`;
    /// returns the process and that line.
    pub fn start(args: &[&str], ready_marker: &str) -> (WeirProcess, String) {
        Self::spawn(args, &[], "error", false, ready_marker)
    }

    /// Like [`WeirProcess::start`], with `env` set.
    pub fn start_with_env(
        args: &[&str],
        env: &[(&str, &str)],
        ready_marker: &str,
    ) -> (WeirProcess, String) {
        Self::spawn(args, env, "error", false, ready_marker)
    }

    /// Like [`WeirProcess::start`] with `RUST_LOG=rust_log`, its log lines
    /// kept in `logs` instead of passed through.
    pub fn start_logging(
        args: &[&str],
        rust_log: &str,
        ready_marker: &str,
    ) -> (WeirProcess, String) {
        Self::spawn(args, &[], rust_log, true, ready_marker)
    }

    fn spawn(
        args: &[&str],
        env: &[(&str, &str)],
        rust_log: &str,
        keep_logs: bool,
        ready_marker: &str,
    ) -> (WeirProcess, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(if keep_logs {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .unwrap();
        let lines = forward_lines(child.stdout.take().unwrap());
        let logs = child.stderr.take().map(forward_lines);
        let mut process = WeirProcess { child, lines, logs };
        let line = process.wait_line(ready_marker);
        (process, line)
    }

    /// The next printed line containing `marker` (panics after a minute).
    pub fn wait_line(&mut self, marker: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("weir never printed {marker:?}"));
            if line.contains(marker) {
                return line;
            }
        }
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) {
        self.send_term();
        let code = self.child.wait().unwrap();
        assert!(code.success(), "weir exited with {code}");
    }

    /// Sends SIGTERM and returns at once (the process drains).
    pub fn send_term(&self) {
        self.signal("-TERM");
    }

    /// Sends a signal (`-HUP`, `-TERM`) and returns at once.
    pub fn signal(&self, which: &str) {
        let status = Command::new("kill")
            .args([which, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to end; whether it ended cleanly.
    pub fn wait_exit(mut self) -> bool {
        self.child.wait().unwrap().success()
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Each line `from` prints, on a channel (read on a thread of its own).
fn forward_lines(from: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    lines
}

/// Runs `weir ARGS` to its end (quiet logs); its output.
pub fn run_weir(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

/// POSTs `body` as JSON to `url`: the status and the JSON answer (`Null`
/// when the answer is not JSON).
pub async fn post_json(url: &str, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The address in a "… listening on http://ADDR" line.
pub fn listening_url(line: &str) -> String {
    let at = line.find("http://").expect("an address");
    line[at..].split_whitespace().next().unwrap().to_string()
}

/// One API node and one worker on `url`, each its own process, and the API
/// node's URL.
pub fn start_api_and_worker(url: &str) -> (WeirProcess, WeirProcess, String) {
    let node = ["--database-url", url, "--no-migrate"];
    let (api, line) = WeirProcess::start(
        &[&["api", "--listen", "127.0.0.1:0"][..], &node[..]].concat(),
        "listening on",
    );
    let (worker, _) = WeirProcess::start(&[&["worker"][..], &node[..]].concat(), "running up to");
    (api, worker, listening_url(&line))
}

/// `weir lb` in front of `backend`, and its URL.
pub fn start_lb(backend: &str) -> (WeirProcess, String) {
    let (lb, line) = WeirProcess::start(
        &["lb", "--listen", "127.0.0.1:0", "--backends", backend],
        "listening on",
    );
    (lb, listening_url(&line))
}

/// Waits (a minute at most) until every task of `ids` has succeeded.
pub async fn wait_all_succeeded(base: &str, ids: &[String]) {
    wait_all_succeeded_within(base, ids, Duration::from_secs(60)).await;
}

/// Waits until every task of `ids` has succeeded; fails past `deadline`.
pub async fn wait_all_succeeded_within(base: &str, ids: &[String], deadline: Duration) {
    let http = reqwest::Client::new();
    poll(deadline, || async {
        for id in ids {
            let task: Value = http
                .get(format!("{base}/tasks/{id}"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            if task["status"] != "succeeded" {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// The row `GET /workers` shows for worker `id`, if it answers and lists it.
pub async fn worker_row(http: &reqwest::Client, base: &str, id: &str) -> Option<Value> {
    let w: Value = http
        .get(format!("{base}/workers"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    w["workers"]
        .as_array()?
        .iter()
        .find(|w| w["id"] == id)
        .cloned()
}

/// A fresh PostgreSQL database with weir's schema, by `weir migrate`.
pub async fn migrated_database() -> (PgDatabase, String) {
    let db = PgDatabase::create().await;
    let url = db.url().to_string();
    let migrate = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["migrate", "--database-url", &url])
        .status()
        .unwrap();
    assert!(migrate.success());
    (db, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_share_postgres_and_lose_nothing() {
    separate_processes_lose_nothing(false).await;
}

/// The same through pgbouncer in transaction pooling mode; workers LISTEN
/// on a direct connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_through_pgbouncer_lose_nothing() {
    separate_processes_lose_nothing(true).await;
}

async fn separate_processes_lose_nothing(through_pooler: bool) {
    const TASKS: usize = 2_000;
    let (db, url) = migrated_database().await;
    let pooled = db.pooled_url();
    // What API nodes and workers connect with.
    let mut store: Vec<&str> = vec!["--no-migrate", "--database-url"];
    if through_pooler {
        store.extend([pooled.as_str(), "--transaction-pooler"]);
        store.extend(["--listen-database-url", url.as_str()]);
    } else {
        store.push(url.as_str());
    }

    let mut apis = Vec::new();
    let mut backends = Vec::new();
    for i in 1..=3 {
        let id = format!("api-{i}");
        let args = ["api", "--listen", "127.0.0.1:0", "--node-id", &id];
        let (p, line) = WeirProcess::start(&[&args[..], &store[..]].concat(), "listening on");
        backends.push(listening_url(&line));
        apis.push(p);
    }
    let mut workers = Vec::new();
    for i in 1..=3 {
        let id = format!("worker-{i}");
        let args = ["worker", "--worker-id", &id, "--concurrency", "4"];
        let (p, _) = WeirProcess::start(&[&args[..], &store[..]].concat(), "running up to");
        workers.push(p);
    }
    let (lb, line) = WeirProcess::start(
        &[
            "lb",
            "--listen",
            "127.0.0.1:0",
            "--backends",
            &backends.join(","),
            "--admin-token",
            "t",
        ],
        "listening on",
    );
    let base = listening_url(&line);

    // 2,000 md5 tasks of distinct inputs, 50 clients at a time.
    let http = reqwest::Client::new();
    let ids: Vec<String> = stream::iter(0..TASKS)
        .map(|i| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let input = json!({"string": format!("multi-process-{i}")});
                submit_honouring_retry_after(&http, &format!("{base}/hash/md5"), &input).await
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), TASKS);

    // Every task succeeds, each on its first and only attempt.
    let pool = Arc::new(sqlx::PgPool::connect(&url).await.unwrap());
    let succeeded = poll(Duration::from_secs(120), || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM tasks_finished WHERE state = 'succeeded' AND attempts = 1",
            )
            .fetch_one(&*pool)
            .await
            .unwrap();
            (n as usize == TASKS).then_some(n)
        }
    })
    .await;
    assert_eq!(succeeded as usize, TASKS);
    let (live, other): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM tasks), \
                (SELECT COUNT(*) FROM tasks_finished WHERE state <> 'succeeded' OR attempts <> 1)",
    )
    .fetch_one(&*pool)
    .await
    .unwrap();
    assert_eq!((live, other), (0, 0));
    // Spot-check results through the lb.
    for id in ids.iter().step_by(400) {
        let task: Value = http
            .get(format!("{base}/tasks/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(task["status"], "succeeded", "{task}");
        assert_eq!(task["result"]["md5"].as_str().unwrap().len(), 32);
    }

    // Workers drain and report their counts: every one did a share, and the
    // shares add up to exactly the tasks (none run twice).
    lb.terminate();
    for w in workers {
        w.terminate();
    }
    for a in apis {
        a.terminate();
    }
    let shares: Vec<(String, i64)> =
        sqlx::query_as("SELECT id, processed FROM workers ORDER BY id")
            .fetch_all(&*pool)
            .await
            .unwrap();
    assert_eq!(shares.len(), 3, "{shares:?}");
    assert!(shares.iter().all(|(_, n)| *n > 0), "{shares:?}");
    assert_eq!(
        shares.iter().map(|(_, n)| n).sum::<i64>() as usize,
        TASKS,
        "{shares:?}"
    );

    // Every request is in the log, and every API node served a share.
    let per_node: Vec<(String, i64)> = sqlx::query_as(
        "SELECT node_id, COUNT(*) FROM requests WHERE path = '/hash/md5' GROUP BY node_id ORDER BY node_id",
    )
    .fetch_all(&*pool)
    .await
    .unwrap();
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.iter().all(|(_, n)| *n > 0), "{per_node:?}");
    assert_eq!(
        per_node.iter().map(|(_, n)| n).sum::<i64>() as usize,
        TASKS,
        "{per_node:?}"
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_node_registers_with_the_lb_and_leaves_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("weir.db").display());
    let (lb, line) = WeirProcess::start(
        &["lb", "--listen", "127.0.0.1:0", "--admin-token", "t"],
        "listening on",
    );
    let base = listening_url(&line);
    let (api, _) = WeirProcess::start(
        &[
            "api",
            "--listen",
            "127.0.0.1:0",
            "--node-id",
            "api-r",
            "--database-url",
            &db,
            "--register-with",
            &base,
            "--admin-token",
            "t",
        ],
        "registered with",
    );
    let resp = reqwest::get(format!("{base}/?message=joined"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-weir-node"], "api-r");

    api.terminate();
    let list: Value = reqwest::get(format!("{base}/lb/backends"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["backends"], json!([]), "{list}");
    let resp = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(resp.status(), 502);
    lb.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_reads_a_toml_config_file_under_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weir.toml");
    std::fs::write(
        &file,
        "strategy = \"least_connections\"\nrate-limit = 7\nrate-burst = 9\nbackends = [\"http://127.0.0.1:9\"]\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (lb, line) = WeirProcess::start(
        &[
            "lb",
            "--config",
            file,
            "--listen",
            "127.0.0.1:0",
            "--admin-token",
            "t",
        ],
        "listening on",
    );
    let base = listening_url(&line);
    let strategy: Value = reqwest::get(format!("{base}/lb/strategy"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(strategy["strategy"], "least_connections");
    let limits: Value = reqwest::get(format!("{base}/lb/rate-limits"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        limits["policy"]["default"],
        json!({"per_second": 7, "burst": 9})
    );
    lb.terminate();

    // A flag beats the file.
    let (lb, line) = WeirProcess::start(
        &[
            "lb",
            "--config",
            file,
            "--strategy",
            "peak_ewma",
            "--listen",
            "127.0.0.1:0",
            "--admin-token",
            "t",
        ],
        "listening on",
    );
    let base = listening_url(&line);
    let strategy: Value = reqwest::get(format!("{base}/lb/strategy"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(strategy["strategy"], "peak_ewma");
    lb.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_can_move_to_its_own_listener() {
    let (upstream, line) = WeirProcess::start(
        &["bench", "upstream", "--listen", "127.0.0.1:0"],
        "listening on",
    );
    let backend = listening_url(&line);
    let (mut lb, line) = WeirProcess::start(
        &[
            "lb",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-token",
            "t",
            "--backends",
            &backend,
        ],
        "listening on",
    );
    let base = listening_url(&line);
    let admin = listening_url(&lb.wait_line("admin API on"));
    let stats: Value = reqwest::get(format!("{admin}/lb/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["backends"][0]["url"], backend.as_str());
    // On the public port, /lb/* is just another path for the backends.
    let resp = reqwest::get(format!("{base}/lb/stats")).await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "ok");
    lb.terminate();
    upstream.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_redraws_until_sigterm_even_when_the_cluster_is_away() {
    // Nothing listens on port 9 here: every redraw shows the error, none is fatal.
    let (mut watch, _) = WeirProcess::start(
        &[
            "status",
            "--target",
            "http://127.0.0.1:9",
            "--watch",
            "100ms",
        ],
        "weir status:",
    );
    watch.wait_line("weir status:");
    watch.terminate();
}

/// The lb SIGKILLed under load: clients see connection errors until a new
/// lb starts, and every task an API node acknowledged (202) before the kill
/// still completes — the lb holds nothing that can be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_killed_under_load_loses_no_acknowledged_task() {
    let (_db, url) = migrated_database().await;
    let (api, worker, backend) = start_api_and_worker(&url);
    let (lb, base) = start_lb(&backend);

    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (acked, stop, base) = (acked.clone(), stop.clone(), base.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                i += 1;
                let sent = http
                    .post(format!("{base}/hash/md5"))
                    .json(&json!({"string": format!("lb-kill-{c}-{i}")}))
                    .send()
                    .await;
                let Ok(resp) = sent else { continue };
                if resp.status() == 202 {
                    let body: Value = resp.json().await.unwrap_or_default();
                    if let Some(id) = body["task_id"].as_str() {
                        acked.lock().unwrap().push(id.to_string());
                    }
                }
            }
        }));
    }
    poll(Duration::from_secs(30), || async {
        (acked.lock().unwrap().len() >= 300).then_some(())
    })
    .await;
    lb.kill();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let ids = acked.lock().unwrap().clone();
    // A new lb; the tasks are read through it from the API node behind.
    let (_lb, base) = start_lb(&backend);
    assert!(ids.len() >= 300);
    wait_all_succeeded(&base, &ids).await;
    drop((api, worker));
}

/// Submits `input` and returns its task id. A 503 is no acknowledgement: it
/// must say why (`overloaded` from the lb, `database_busy` from an API node)
/// and carry Retry-After, and the client submits again as told — what a
/// client does when a loaded machine (CI's) slows PostgreSQL's commits.
async fn submit_honouring_retry_after(http: &reqwest::Client, url: &str, input: &Value) -> String {
    for _ in 0..20 {
        let resp = http.post(url).json(input).send().await.unwrap();
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").cloned();
        let body: Value = resp.json().await.unwrap();
        match status {
            202 => return body["task_id"].as_str().unwrap().to_string(),
            503 => {
                let code = body["error"]["code"].as_str().unwrap_or_default();
                assert!(
                    matches!(code, "overloaded" | "database_busy") && retry_after.is_some(),
                    "a 503 without its reason or Retry-After: {body}"
                );
                let secs: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
                tokio::time::sleep(Duration::from_secs(secs)).await;
            }
            _ => panic!("submitting {input} got {status}: {body}"),
        }
    }
    panic!("{input} was refused 20 times over")
}

/// `weir up --listen 127.0.0.1:0 --access-log ARGS` at `RUST_LOG=debug`,
/// every line it prints (stdout and stderr) kept for a test that checks
/// what it logs. Returns the child, the lines so far (through the lb's
/// address line), the rest as they come, and the lb's URL.
pub fn start_up_keeping_every_line(
    args: &[&std::ffi::OsStr],
) -> (Child, Vec<String>, Receiver<String>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["up", "--listen", "127.0.0.1:0", "--access-log"])
        .args(args)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let mut lines = Vec::new();
    let base = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("weir up printed no lb address");
        lines.push(line.clone());
        if let Some(addr) = line.strip_prefix("weir: lb listening on ") {
            break addr.split_whitespace().next().unwrap().to_string();
        }
    };
    (child, lines, rx, base)
}
