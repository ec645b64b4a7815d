//! Restarts that drop nothing: a new `weir lb` binary takes the running
//! one's listeners (`--handover-socket`), and SIGHUP reloads in place, both
//! under constant load.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use weir_bench::upstream::{self, UpstreamSpec};

use crate::processes::WeirProcess;
use crate::support::poll;

pub(crate) async fn start_upstream() -> std::net::SocketAddr {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spec = UpstreamSpec {
        listen: "127.0.0.1:0".parse().unwrap(),
        delay: Duration::ZERO,
        error_per_mille: 0,
        capacity: None,
    };
    tokio::spawn(upstream::run(spec, move |addr| {
        let _ = tx.send(addr);
    }));
    rx.await.unwrap()
}

/// A port nothing listens on now: the lb is given it fixed, as in
/// production, so the old and the new process name the same address.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) async fn stats(base: &str) -> Value {
    reqwest::get(format!("{base}/lb/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_and_a_reload_under_constant_load_fail_no_request() {
    let (first, second) = (start_upstream().await, start_upstream().await);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weir.toml");
    std::fs::write(&config, format!("backends = [\"http://{first}\"]\n")).unwrap();
    let socket = dir.path().join("lb.sock");
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let args = [
        "lb",
        "--listen",
        &listen,
        "--threads",
        "2",
        "--handover-socket",
        socket.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let (old, _) = WeirProcess::start(&args, "listening on");

    // 1,500 requests/s on 16 keep-alive connections for 6 s.
    let load = std::thread::spawn({
        let url = format!("{base}/");
        move || {
            let out = Command::new(env!("CARGO_BIN_EXE_weir"))
                .args([
                    "bench", &url, "--rate", "1500", "-c", "16", "-d", "6s", "--json",
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        }
    });
    let served = |v: &Value| -> u64 {
        v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["requests"].as_u64().unwrap_or(0))
            .sum()
    };
    poll(Duration::from_secs(10), || async {
        (served(&stats(&base).await) > 1000).then_some(())
    })
    .await;

    // The upgrade: the new binary takes the listeners, the old one drains.
    let (new, line) = WeirProcess::start(&args, "listening on");
    assert!(line.contains("taken over"), "{line}");
    let exited = tokio::task::spawn_blocking(move || old.wait_exit());
    let clean = tokio::time::timeout(Duration::from_secs(20), exited)
        .await
        .expect("the old lb did not exit after handing over")
        .unwrap();
    assert!(clean, "the old lb exited with an error");
    let before_reload = served(&stats(&base).await);

    // The reload: a second backend joins in place.
    std::fs::write(
        &config,
        format!("backends = [\"http://{first}\", \"http://{second}\"]\n"),
    )
    .unwrap();
    new.signal("-HUP");
    let second_id = second.to_string();
    poll(Duration::from_secs(10), || async {
        let v = stats(&base).await;
        let joined = v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == second_id.as_str() && b["requests"].as_u64() > Some(0));
        joined.then_some(())
    })
    .await;

    let report = tokio::task::spawn_blocking(move || load.join().unwrap())
        .await
        .unwrap();
    assert_eq!(report["errors"], 0, "{report}");
    let statuses = report["statuses"].as_object().unwrap();
    assert_eq!(statuses.keys().collect::<Vec<_>>(), ["200"], "{report}");
    // Every scheduled request was sent and answered (1,500/s × 6 s).
    let answered = report["requests"].as_u64().unwrap();
    assert!(answered >= 8_500, "{report}");
    assert!(
        served(&stats(&base).await) > before_reload,
        "the new lb served"
    );
    new.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_lb_whose_predecessor_is_gone_binds_afresh() {
    let backend = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("lb.sock");
    let backend = format!("http://{backend}");
    let args = [
        "lb",
        "--listen",
        "127.0.0.1:0",
        "--backends",
        &backend,
        "--handover-socket",
        socket.to_str().unwrap(),
    ];
    // The first lb is killed: its socket file stays, nobody listens on it.
    let (first, _) = WeirProcess::start(&args, "listening on");
    poll(Duration::from_secs(10), || async {
        socket.exists().then_some(())
    })
    .await;
    first.kill();
    let (second, line) = WeirProcess::start(&args, "listening on");
    assert!(!line.contains("taken over"), "{line}");
    let base = crate::processes::listening_url(&line);
    let answer = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(answer.status(), 200);
    second.terminate();
}
