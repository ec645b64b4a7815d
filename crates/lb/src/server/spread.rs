//! Connections spread evenly over the serving threads.
//!
//! Each serving thread accepts on its own `SO_REUSEPORT` listener and the
//! kernel hashes new connections onto them: with a few long-lived clients
//! the split comes out uneven, and each thread's share of the work with it.
//! HAProxy hands each accepted connection to its least loaded thread; here
//! a thread keeps what it accepts unless it already serves more than the
//! least loaded one by more than one connection, and then hands the
//! connection over that thread's [`Inbox`]. Counting is approximate under
//! races (two threads may pick the same least loaded one at once); the
//! next connection corrects it.

use std::cell::OnceCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::Router;
use serde::Serialize;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

/// The serving threads' connection counts and the channels between them.
pub struct Spread {
    threads: Box<[ThreadCounts]>,
    inboxes: Box<[mpsc::UnboundedSender<Handed>]>,
}

/// Aligned to its own cache lines: each thread counts its requests here, and
/// neighbours sharing a line would contend on every request.
#[derive(Default)]
#[repr(align(128))]
struct ThreadCounts {
    live: AtomicUsize,
    accepted: AtomicU64,
    handed_in: AtomicU64,
    requests: AtomicU64,
}

/// What one serving thread holds and has done, for `/lb/stats`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ThreadStats {
    /// Client connections open on the thread now.
    pub connections: usize,
    /// Connections it has served since start, its own and handed in.
    pub connections_total: u64,
    /// Of those, connections another thread accepted and handed over.
    pub handed_in: u64,
    /// Requests it sent to backends.
    pub requests: u64,
}

/// A connection accepted on one thread, to be served on another.
pub(crate) struct Handed {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub permit: OwnedSemaphorePermit,
    pub stop: watch::Receiver<bool>,
    pub admin: Router,
    pub tls: bool,
    pub live: LiveGuard,
}

/// A serving thread's end of the channel connections are handed over by.
pub struct Inbox {
    spread: Arc<Spread>,
    index: usize,
    receiver: mpsc::UnboundedReceiver<Handed>,
}

/// A serving thread's place in the [`Spread`], held by its accept loops.
#[derive(Clone)]
pub struct Seat {
    spread: Arc<Spread>,
    index: usize,
}

/// Counts a connection as open on its thread until dropped.
pub(crate) struct LiveGuard {
    spread: Arc<Spread>,
    index: usize,
}

/// Where an accepted connection is served.
pub(crate) enum Placement {
    Here(LiveGuard),
    /// On another thread, through this inbox (the guard already counts it there).
    Away(mpsc::UnboundedSender<Handed>, LiveGuard),
}

thread_local! {
    /// The thread's place, once it serves: requests are counted against it.
    static THREAD_SEAT: OnceCell<Seat> = const { OnceCell::new() };
}

impl Spread {
    /// A spread over `threads` serving threads, and each thread's inbox.
    pub fn new(threads: usize) -> (Arc<Spread>, Vec<Inbox>) {
        let threads = threads.max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..threads).map(|_| mpsc::unbounded_channel()).unzip();
        let spread = Arc::new(Spread {
            threads: (0..threads).map(|_| ThreadCounts::default()).collect(),
            inboxes: senders.into_boxed_slice(),
        });
        let inboxes = receivers
            .into_iter()
            .enumerate()
            .map(|(index, receiver)| Inbox {
                spread: spread.clone(),
                index,
                receiver,
            })
            .collect();
        (spread, inboxes)
    }

    /// Each thread's counts, in thread order.
    pub fn stats(&self) -> Vec<ThreadStats> {
        self.threads
            .iter()
            .map(|t| ThreadStats {
                connections: t.live.load(Ordering::Relaxed),
                connections_total: t.accepted.load(Ordering::Relaxed),
                handed_in: t.handed_in.load(Ordering::Relaxed),
                requests: t.requests.load(Ordering::Relaxed),
            })
            .collect()
    }

    fn count_in(self: &Arc<Self>, index: usize) -> LiveGuard {
        let counts = &self.threads[index];
        counts.live.fetch_add(1, Ordering::Relaxed);
        counts.accepted.fetch_add(1, Ordering::Relaxed);
        LiveGuard {
            spread: self.clone(),
            index,
        }
    }
}

impl Seat {
    /// Decides where a connection this thread just accepted is served.
    pub(crate) fn place(&self) -> Placement {
        let live = |t: &ThreadCounts| t.live.load(Ordering::Relaxed);
        let threads = &self.spread.threads;
        let mine = live(&threads[self.index]);
        let least = threads
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| live(t))
            .map(|(i, t)| (i, live(t)));
        match least {
            Some((other, fewer)) if other != self.index && mine > fewer + 1 => {
                threads[other].handed_in.fetch_add(1, Ordering::Relaxed);
                let guard = self.spread.count_in(other);
                Placement::Away(self.spread.inboxes[other].clone(), guard)
            }
            _ => Placement::Here(self.spread.count_in(self.index)),
        }
    }
}

impl Inbox {
    /// This thread's seat, for its accept loops. Also marks the calling
    /// thread as this seat's, so requests served on it are counted.
    pub fn seat(&self) -> Seat {
        let seat = Seat {
            spread: self.spread.clone(),
            index: self.index,
        };
        THREAD_SEAT.with(|cell| {
            let _ = cell.set(seat.clone());
        });
        seat
    }

    pub(crate) async fn next(&mut self) -> Option<Handed> {
        self.receiver.recv().await
    }

    /// Stops taking connections; those already handed over are returned
    /// (a thread that hands over later serves the connection itself).
    pub(crate) fn close(&mut self) -> Vec<Handed> {
        self.receiver.close();
        std::iter::from_fn(|| self.receiver.try_recv().ok()).collect()
    }
}

impl LiveGuard {
    /// The guard moved back to the thread that accepted: the handover failed.
    pub(crate) fn back_to(self, seat: &Seat) -> LiveGuard {
        drop(self);
        seat.spread.count_in(seat.index)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.spread.threads[self.index]
            .live
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a request against the calling serving thread, if it has a seat.
pub(crate) fn count_request() {
    THREAD_SEAT.with(|cell| {
        if let Some(seat) = cell.get() {
            seat.spread.threads[seat.index]
                .requests
                .fetch_add(1, Ordering::Relaxed);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(placements: Vec<Placement>) -> Vec<LiveGuard> {
        placements
            .into_iter()
            .map(|p| match p {
                Placement::Here(g) | Placement::Away(_, g) => g,
            })
            .collect()
    }

    #[test]
    fn connections_all_accepted_on_one_thread_end_up_even() {
        let (spread, inboxes) = Spread::new(2);
        let seat = Seat {
            spread: spread.clone(),
            index: 0,
        };
        let guards = held((0..64).map(|_| seat.place()).collect());
        let live: Vec<usize> = spread.stats().iter().map(|t| t.connections).collect();
        // Within the margin of one: 33/31, the other thread's all handed in.
        assert_eq!(live, vec![33, 31]);
        assert_eq!(spread.stats()[1].handed_in, 31);
        drop(guards);
        assert!(spread.stats().iter().all(|t| t.connections == 0));
        drop(inboxes);
    }

    #[test]
    fn a_thread_keeps_what_it_accepts_while_the_split_is_within_one() {
        let (spread, _inboxes) = Spread::new(3);
        let seats: Vec<Seat> = (0..3)
            .map(|index| Seat {
                spread: spread.clone(),
                index,
            })
            .collect();
        let mut guards = Vec::new();
        for round in 0..30 {
            match seats[round % 3].place() {
                Placement::Here(g) => guards.push(g),
                Placement::Away(..) => panic!("handed over with an even split"),
            }
        }
        assert!(spread.stats().iter().all(|t| t.connections == 10));
    }
}
