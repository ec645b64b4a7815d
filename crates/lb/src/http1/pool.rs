//! Idle keep-alive connections to the backends, per thread.
//!
//! A request borrows a connection for its whole exchange and gives it back
//! when the response has been relayed, so taking and returning one is a
//! `RefCell` borrow on this thread: no lock, no connection task, no channel.

use std::cell::RefCell;
use std::collections::HashMap;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// Most idle connections kept per backend per thread.
const MAX_IDLE_PER_BACKEND: usize = 256;

struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// FNV-1a: the keys are a few short authorities, looked up twice per
/// request; SipHash's DoS resistance buys nothing here.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type ByAuthority = HashMap<String, Vec<Idle>, std::hash::BuildHasherDefault<Fnv>>;

thread_local! {
    static IDLE: RefCell<ByAuthority> = RefCell::new(ByAuthority::default());
}

/// An idle connection to `authority` that still looks open, if any.
/// `now` is a recent clock reading (the caller has one).
pub(crate) fn take(authority: &str, max_idle: Duration, now: Instant) -> Option<TcpStream> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(authority)?;
        while let Some(c) = list.pop() {
            if now.saturating_duration_since(c.since) < max_idle && looks_open(&c.stream) {
                return Some(c.stream);
            }
        }
        None
    })
}

/// Gives a connection whose last response was read to its end back, idle
/// since about `now`.
pub(crate) fn put(authority: &str, stream: TcpStream, now: Instant) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = match idle.get_mut(authority) {
            Some(list) => list,
            None => idle.entry(authority.to_string()).or_default(),
        };
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push(Idle { stream, since: now });
        }
    });
}

/// Whether an idle connection has seen nothing since its last response: a
/// readable idle connection was closed by the backend (or sent garbage).
/// Costs no system call unless the runtime saw it become readable.
fn looks_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}
