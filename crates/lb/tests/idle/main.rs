//! What an idle client connection costs the lb's heap, counted by this test
//! binary's own allocator (a binary of its own: no other test allocates
//! meanwhile).

use std::time::Duration;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::net::TcpStream;

use tokio::net::TcpListener;
use weir_lb::{Lb, LbConfig};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not yet freed since `region` began.
fn live(region: &Region<std::alloc::System>) -> isize {
    let change = region.change();
    change.bytes_allocated as isize - change.bytes_deallocated as isize + change.bytes_reallocated
}

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
    const N: isize = 2000;
    let mut clients = Vec::new();
    // The first connections warm up what is allocated once.
    for _ in 0..50 {
        clients.push(TcpStream::connect(addr).unwrap());
    }
    let region = Region::new(GLOBAL);
    settle(&region).await;
    let before = live(&region);
    // Blocking clients, which allocate nothing, in batches the backlog holds.
    for _ in 0..N / 100 {
        for _ in 0..100 {
            clients.push(TcpStream::connect(addr).unwrap());
        }
        settle(&region).await;
    }
    let after = live(&region);
    let per_connection = (after - before) / N;
    eprintln!("{per_connection} bytes per idle connection");
    assert!(
        per_connection < 1536,
        "{per_connection} bytes per idle connection"
    );
    drop(clients);
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}

/// Lets the lb accept and park every connection: yields until what is
/// allocated stops changing (within a deadline).
async fn settle(region: &Region<'_, std::alloc::System>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (mut last, mut steady) = (live(region), 0);
    while steady < 500 && std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
        let now = live(region);
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
    }
}
