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
    /// The backend's own idle limit less a margin, when it announced one.
    backend_limit: Option<Duration>,
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
            let limit = c.backend_limit.map_or(max_idle, |b| b.min(max_idle));
            if now.saturating_duration_since(c.since) < limit && looks_open(&c.stream) {
                return Some(c.stream);
            }
        }
        None
    })
}

/// Gives a connection whose last response was read to its end back, idle
/// since about `now`; `keep_alive_timeout` is the backend's announced idle
/// limit (`Keep-Alive: timeout=N`), if any.
pub(crate) fn put(
    authority: &str,
    stream: TcpStream,
    now: Instant,
    keep_alive_timeout: Option<Duration>,
) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = match idle.get_mut(authority) {
            Some(list) => list,
            None => idle.entry(authority.to_string()).or_default(),
        };
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push(Idle {
                stream,
                since: now,
                backend_limit: keep_alive_timeout.map(retire_before),
            });
        }
    });
}

/// How long a connection whose backend closes it after `timeout` idle is
/// kept: a second less (half, for timeouts under 2 s), so that it is not
/// taken for a request just as the backend's close is on its way.
fn retire_before(timeout: Duration) -> Duration {
    const MARGIN: Duration = Duration::from_secs(1);
    if timeout >= 2 * MARGIN {
        timeout - MARGIN
    } else {
        timeout / 2
    }
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
