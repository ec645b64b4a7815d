//! Counting a test's heap: what an idle connection costs a server.
//!
//! The test binary declares `stats_alloc`'s counting allocator as its
//! global allocator (a binary of its own, so no other test allocates
//! meanwhile); these read it.

use std::alloc::System;
use std::time::{Duration, Instant};

pub use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

/// Bytes allocated and not yet freed since `region` began.
pub fn live(region: &Region<System>) -> isize {
    let change = region.change();
    change.bytes_allocated as isize - change.bytes_deallocated as isize + change.bytes_reallocated
}

/// Lets a server on this (current-thread) runtime accept and park every
/// pending connection: yields until what is allocated stops changing,
/// within a deadline.
pub async fn settle(region: &Region<'_, System>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut last, mut steady) = (live(region), 0);
    while steady < 500 && Instant::now() < deadline {
        tokio::task::yield_now().await;
        let now = live(region);
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
    }
}

/// Heap bytes each of `n` new idle connections to `addr` costs, opened by
/// blocking clients (which allocate nothing) in batches the backlog holds;
/// the connections are returned, still open.
pub async fn per_idle_connection(
    region: &Region<'_, System>,
    addr: std::net::SocketAddr,
    n: usize,
) -> (isize, Vec<std::net::TcpStream>) {
    let mut clients = Vec::with_capacity(n);
    settle(region).await;
    let before = live(region);
    for _ in 0..n.div_ceil(100) {
        for _ in 0..100.min(n - clients.len()) {
            clients.push(std::net::TcpStream::connect(addr).expect("connect"));
        }
        settle(region).await;
    }
    ((live(region) - before) / n as isize, clients)
}
