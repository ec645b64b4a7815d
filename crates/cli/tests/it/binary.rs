//! The real binary: `weir up` starts, answers, and on SIGTERM finishes the
//! request in flight and exits 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::processes::{listening_url, WeirProcess};
use crate::support::poll;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_up_serves_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--delay-ms",
            "1000",
            "--admin-token",
            "t",
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read what it prints until the lb's address appears.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    let base = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("weir up printed no lb address");
        printed.push(line.clone());
        if let Some(addr) = line.strip_prefix("weir: lb listening on ") {
            break addr.split_whitespace().next().unwrap().to_string();
        }
    };
    while !printed.iter().any(|l| l.contains("ready")) {
        printed.push(rx.recv_timeout(Duration::from_secs(60)).unwrap());
    }
    assert_eq!(
        printed
            .iter()
            .filter(|l| l.contains("api-") && l.contains("listening"))
            .count(),
        3,
        "{printed:?}"
    );
    assert!(
        printed.iter().any(|l| l.contains("3 workers")),
        "{printed:?}"
    );
    assert!(data_dir.join("weir.db").exists());

    // A slow request is in flight when SIGTERM arrives; it must still complete.
    let http = reqwest::Client::new();
    let in_flight = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move { http.get(format!("{base}/?message=last")).send().await }
    });
    poll(Duration::from_secs(10), || async {
        let stats: serde_json::Value = http
            .get(format!("{base}/lb/stats"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let busy: u64 = stats["backends"]
            .as_array()?
            .iter()
            .map(|b| b["in_flight"].as_u64().unwrap_or(0))
            .sum();
        (busy > 0).then_some(())
    })
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let resp = in_flight
        .await
        .unwrap()
        .expect("in-flight request was dropped");
    assert_eq!(resp.status(), 200);
    assert!(resp
        .text()
        .await
        .unwrap()
        .starts_with("Written to DB by node api-"));
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0), "weir up did not exit cleanly");
    // The row of the last request is in the store.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", data_dir.join("weir.db").display()))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE message = 'last'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// Starts `weir up` on `data_dir`; returns it and the lb's address.
pub(crate) fn start_up(data_dir: &std::path::Path) -> (WeirProcess, String) {
    let data_dir = data_dir.display().to_string();
    let args = [
        "up",
        "--listen",
        "127.0.0.1:0",
        "--admin-token",
        "t",
        "--data-dir",
        &data_dir,
    ];
    let (process, line) = WeirProcess::start(&args, "lb listening on");
    (process, listening_url(&line))
}

/// Power loss, as near as a test gets: `weir up` (SQLite) killed with
/// SIGKILL while clients are still submitting. Every task and event it
/// acknowledged with 202 is there after a restart on the same data dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_up_killed_with_sigkill_keeps_everything_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (up, base) = start_up(&data_dir);
    let http = reqwest::Client::new();
    let acked_tasks = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let acked_events = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (http, base) = (http.clone(), base.clone());
        let (tasks, events) = (acked_tasks.clone(), acked_events.clone());
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                // Queued far ahead, so the count does not depend on workers.
                let task = serde_json::json!({"type": "noop", "input": {"n": i},
                    "run_at": "2099-01-01T00:00:00Z"});
                let Ok(resp) = http.post(format!("{base}/tasks")).json(&task).send().await else {
                    return;
                };
                if resp.status() == 202 {
                    let body: serde_json::Value = resp.json().await.unwrap_or_default();
                    if let Some(id) = body["task_id"].as_str() {
                        tasks.lock().unwrap().push(id.to_string());
                    }
                }
                let batch: Vec<_> = (0..10)
                    .map(|e| serde_json::json!({"id": format!("c{c}-{i}-{e}"), "n": e}))
                    .collect();
                let Ok(resp) = http.post(format!("{base}/write")).json(&batch).send().await else {
                    return;
                };
                if resp.status() == 202 {
                    events.fetch_add(10, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }));
    }
    poll(Duration::from_secs(30), || async {
        (acked_tasks.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    up.kill();
    for client in clients {
        let _ = client.await;
    }
    let tasks = acked_tasks.lock().unwrap().clone();
    let events = acked_events.load(std::sync::atomic::Ordering::SeqCst);

    let (restarted, base) = start_up(&data_dir);
    let mut missing = Vec::new();
    for id in &tasks {
        let resp = http.get(format!("{base}/tasks/{id}")).send().await.unwrap();
        if resp.status() != 200 {
            missing.push(id.clone());
        }
    }
    let counted: serde_json::Value = http
        .get(format!("{base}/messages/count"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    restarted.kill();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged tasks lost",
        missing.len(),
        tasks.len()
    );
    let stored = counted["count"].as_u64().unwrap_or(0);
    assert!(
        stored >= events,
        "{events} events acknowledged, {stored} stored: {counted}"
    );
}

/// SIGHUP re-reads the config file: the backends and rate limits it names
/// apply in place, without a restart; a config that does not load keeps the
/// one in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_the_config_files_backends_and_rate_limits() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weir.toml");
    let write = |text: &str| std::fs::write(&config, text).unwrap();
    write("backends = [\"http://127.0.0.1:1\"]\n");
    let (lb, line) = WeirProcess::start_logging(
        &[
            "lb",
            "--listen",
            "127.0.0.1:0",
            "--admin-token",
            "t",
            "--config",
            config.to_str().unwrap(),
        ],
        "warn,weir=info",
        "listening on",
    );
    let base = listening_url(&line);
    let stats = || async {
        let v: serde_json::Value = reqwest::get(format!("{base}/lb/stats"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v
    };
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&stats().await), ["127.0.0.1:1"]);

    write("backends = [\"http://127.0.0.1:2\", \"http://127.0.0.1:3=4\"]\nrate-limit = 50\n");
    lb.signal("-HUP");
    poll(Duration::from_secs(10), || async {
        let v = stats().await;
        (ids(&v) == ["127.0.0.1:2", "127.0.0.1:3"]).then_some(())
    })
    .await;
    // The backends and the rate limits are applied one after the other.
    poll(Duration::from_secs(10), || async {
        let limits: serde_json::Value = reqwest::Client::new()
            .get(format!("{base}/lb/rate-limits"))
            .bearer_auth("t")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (limits["policy"]["default"]["per_second"] == 50).then_some(())
    })
    .await;

    // A file that does not load: what is in use stays, and the log says why.
    let refused = |lb: &WeirProcess| {
        let logs = lb.logs.as_ref().unwrap();
        loop {
            let line = logs
                .recv_timeout(Duration::from_secs(30))
                .expect("no log line about the refused reload");
            if line.contains("reload") && (line.contains("does not load") || line.contains("kept"))
            {
                return line;
            }
        }
    };
    write("backends = [\"http://127.0.0.1:5\"]\nstrategy = \"no_such\"\n");
    lb.signal("-HUP");
    assert!(refused(&lb).contains("strategy"));
    write("backends = [\"ftp://127.0.0.1:5\"]\n");
    lb.signal("-HUP");
    assert!(refused(&lb).contains("ftp://"));
    assert_eq!(ids(&stats().await), ["127.0.0.1:2", "127.0.0.1:3"]);
    // A good file after them applies.
    write("backends = [\"http://127.0.0.1:6\"]\n");
    lb.signal("-HUP");
    poll(Duration::from_secs(10), || async {
        (ids(&stats().await) == ["127.0.0.1:6"]).then_some(())
    })
    .await;
    lb.kill();
}

/// `weir lb` says at start where its admin surface is: loopback clients
/// only on a public listener with no `--admin-allow` or `--admin-listen`.
#[test]
fn the_lb_says_where_its_admin_surface_is() {
    let said = |args: &[&str]| {
        let base = ["lb", "--backends", "http://127.0.0.1:9", "--check-config"];
        let out = crate::processes::run_weir(&[&base[..], args].concat());
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let public = said(&["--listen", "0.0.0.0:0"]);
    assert!(public.contains("loopback clients only"), "{public}");
    let allowed = said(&["--listen", "0.0.0.0:0", "--admin-allow", "10.0.0.0/8"]);
    assert!(allowed.contains("--admin-allow only"), "{allowed}");
    let apart = said(&["--listen", "0.0.0.0:0", "--admin-listen", "127.0.0.1:0"]);
    assert!(apart.contains("--admin-listen only"), "{apart}");
    let local = said(&["--listen", "127.0.0.1:0"]);
    assert!(local.contains("on the main listener"), "{local}");
}

/// Regression: the SIGTERM handler was installed after "listening on" was
/// printed, so a SIGTERM right after that line killed the process instead
/// of draining it (exit by signal; seen on `weir api`). Each role installs
/// it before its first line now.
#[test]
fn a_sigterm_right_after_the_first_listening_line_drains() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("weir.db").display());
        let args = ["api", "--listen", "127.0.0.1:0", "--database-url", &url];
        let (api, _) = crate::processes::WeirProcess::start(&args, "listening on");
        api.terminate();
    }
}
