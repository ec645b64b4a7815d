//! What an idle client connection costs the lb's heap, counted by this test
//! binary's own allocator.

use std::time::Duration;

use tokio::net::TcpListener;
use weir_lb::{Lb, LbConfig};
use weir_testkit::heap::{per_idle_connection, Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// A new socket's readiness is set before any byte has come: waiting with
/// `readable()` then reading went straight on to allocate the fast path's
/// state and a 4 KiB read buffer for every idle connection (7.7 KB each in
/// this test). Waiting now peeks, and the connection's task stays small
/// until a byte arrives. (A debug build's futures are larger than a
/// release build's; docs/BENCHMARKS.md has the release figure.)
#[tokio::test(flavor = "current_thread")]
async fn regression_an_idle_connection_holds_no_buffer() {
    let mut config = LbConfig::new(vec!["http://127.0.0.1:9".into()]);
    config.health_interval = Duration::from_secs(3600);
    config.max_connections = 10_000;
    let lb = Lb::new(config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(weir_lb::serve(listener, lb, async move {
        let _ = stopped.await;
    }));
    // The first connections warm up what is allocated once.
    let (_, warm) = per_idle_connection(&Region::new(GLOBAL), addr, 50).await;
    let (per_connection, clients) = per_idle_connection(&Region::new(GLOBAL), addr, 2000).await;
    eprintln!("{per_connection} bytes per idle connection");
    assert!(
        per_connection < 1536,
        "{per_connection} bytes per idle connection"
    );
    drop((warm, clients));
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}
