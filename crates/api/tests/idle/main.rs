//! What an idle client connection costs an API node's heap, counted by this
//! test binary's own allocator.

use std::io::{Read, Write};

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use weir_testkit::heap::{per_idle_connection, Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// `axum::serve` hands each accepted connection to hyper at once, which
/// allocates its buffers and state: an API node held 18 KB per connection
/// that had sent nothing (`bench/idle_api.sh`). Connections now wait for
/// their first byte as small tasks. (A debug build's futures are larger
/// than a release build's; docs/BENCHMARKS.md has the release figure.)
#[tokio::test(flavor = "current_thread")]
async fn regression_an_idle_connection_holds_no_buffer() {
    let app = Router::new().route("/health", get(|| async { "ok" }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(weir_api::serve::serve(listener, app, async move {
        let _ = stopped.await;
    }));
    // The first connections warm up what is allocated once.
    let (_, warm) = per_idle_connection(&Region::new(GLOBAL), addr, 50).await;
    let (per_connection, mut clients) = per_idle_connection(&Region::new(GLOBAL), addr, 2000).await;
    eprintln!("{per_connection} bytes per idle connection");
    assert!(
        per_connection < 1536,
        "{per_connection} bytes per idle connection"
    );

    // The connections still work once they speak.
    let mut client = clients.pop().unwrap();
    client
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = tokio::task::spawn_blocking(move || {
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
    drop((warm, clients));
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}
