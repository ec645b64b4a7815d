//! The lb while its own thread is busy — alone in a binary of its own, so
//! that other tests' load does not slow the backend as well and blur whose
//! wait an answer measured.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

#[path = "../it/support.rs"]
#[allow(dead_code, unused_imports)]
mod support;

use support::{stats_at, TestBackend, TestLb};

/// A burst of new TLS connections keeps the lb's thread busy with
/// handshakes; answers wait in their sockets meanwhile, and the adaptive
/// limit read that wait as the backend slowing down (with the fixed queue of
/// the time, part of the burst was refused as overload). Answers read while
/// the lb's own thread ran late are now set aside. (Whether any request is
/// refused here depends on how many wake-ups each needed while the thread
/// was busy — 30 to 34 of 300 without the check in three runs here; with it
/// none in six runs, but 61 in one clean-clone CI run — so this asserts the
/// check itself; `bench/tls_burst.sh` measures refusals under real
/// handshake bursts.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lbs_own_busy_thread_is_not_charged_to_a_fast_backend() {
    let app = TestBackend::start("a", Duration::ZERO).await;
    // The lb on a single-threaded runtime of its own, as each of `weir
    // lb`'s serving threads is; the backend and the clients elsewhere.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let url = app.url();
    let lb_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let lb = TestLb::start_with(vec![url], |_| {}).await;
            let _ = started_tx.send((lb.base.clone(), tokio::runtime::Handle::current()));
            let _ = stop_rx.await;
            lb.stop().await;
        });
    });
    let (base, lb_runtime) = started_rx.await.unwrap();
    let work = format!("{base}/work");
    // Unloaded: the backend's first window of answers, its baseline.
    let http = reqwest::Client::new();
    for _ in 0..40 {
        assert_eq!(http.get(&work).send().await.unwrap().status(), 200);
    }
    // The lb's thread busy, as with a burst of handshakes: 20 ms of CPU
    // work at a time between its other tasks.
    let busy = Arc::new(AtomicBool::new(true));
    let hog = lb_runtime.spawn({
        let busy = busy.clone();
        async move {
            while busy.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
                tokio::task::yield_now().await;
            }
        }
    });
    // Meanwhile a burst: 300 requests at once, each on a new connection.
    let burst = (0..300).map(|_| {
        let work = work.clone();
        tokio::spawn(async move {
            let answer = reqwest::Client::new().get(&work).send().await?;
            let status = answer.status().as_u16();
            // Anything else is a failure: its error body says why.
            let why = match status {
                200 | 503 => String::new(),
                _ => answer.text().await?,
            };
            Ok::<_, reqwest::Error>((status, why))
        })
    });
    let answers = join_all(burst).await;
    busy.store(false, Ordering::Relaxed);
    hog.await.unwrap();
    // Every request answered: 200, or a refusal of the lb's own (503 with
    // Retry-After) — no error, no connection lost.
    let mut other: Vec<String> = answers
        .into_iter()
        .map(|a| a.unwrap().map_err(|e| e.to_string()))
        .filter(|a| !matches!(a, Ok((200 | 503, _))))
        .map(|a| format!("{a:?}"))
        .collect();
    other.sort();
    assert!(other.is_empty(), "{other:?}");
    // The lb saw itself late, and set those answers aside instead of
    // teaching the backend's limit with them.
    let stats = stats_at(&base).await;
    assert!(stats["late_answers"].as_u64().unwrap() > 0, "{stats}");
    let _ = stop_tx.send(());
    lb_thread.join().unwrap();
}
