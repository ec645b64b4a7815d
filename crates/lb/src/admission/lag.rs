//! Whether the lb itself ran late, so that its own saturation is not
//! charged to a backend.
//!
//! A backend's response time is read across the lb's scheduling: the answer
//! may sit in the socket while the thread is busy with other work (a burst
//! of TLS handshakes costs many milliseconds of CPU). The adaptive limit
//! would read that wait as the backend slowing down, cut the backend's limit
//! and refuse as overload requests a healthy backend answers at once. So
//! each serving runtime runs [`watch`]: a timer that should fire every
//! [`PERIOD`]. When it fires late, every task woken then ran late too; a
//! response time read across such a moment, and not much longer than the
//! lateness ([`Lag::is_own_wait`]), says more about the lb than about the
//! backend and is not counted. A backend slow well past that still is.
//!
//! A serving thread with its own single-threaded runtime keeps its reading
//! to itself (a thread-local, no shared cache line); a multi-threaded
//! runtime, whose tasks move between threads, shares one in the lb's state.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backends::{clock_ns, clock_ns_at};

/// How often the timer should fire.
pub const PERIOD: Duration = Duration::from_millis(10);
/// Tokio fires a timer at its first millisecond tick at or after the
/// deadline: lateness up to this is the clock's grain, not load.
const GRAIN_NS: u64 = 1_000_000;
/// Lateness past the grain from which the thread counts as running late.
pub const LATE: Duration = Duration::from_millis(2);
/// An answer is the lb's own wait when it took less than this many times
/// the lateness: a request waits on a few wake-ups (its write, its answer),
/// each as late as the thread runs. A slower answer is the backend's.
const WAKE_UPS: u32 = 4;

/// One runtime's reading (`clock_ns`): when its timer is due (0: no timer
/// runs), when it last fired late (0: never) and the most it was late in
/// that spell of late wakes.
#[derive(Clone, Copy, Default)]
struct Reading {
    due: u64,
    late_at: u64,
    late_by: u64,
}

impl Reading {
    /// The most the runtime ran late from `since_ns` to `now_ns`, counting
    /// its timer as late by as much as it is overdue now.
    fn late_since(self, since_ns: u64, now_ns: u64) -> Duration {
        if self.due == 0 {
            return Duration::ZERO;
        }
        let fired_late = if self.late_at != 0 && self.late_at >= since_ns {
            self.late_by
        } else {
            0
        };
        let overdue = now_ns.saturating_sub(self.due).saturating_sub(GRAIN_NS);
        Duration::from_nanos(fired_late.max(overdue))
    }
}

thread_local! {
    static OWN: Cell<Reading> = const { Cell::new(Reading { due: 0, late_at: 0, late_by: 0 }) };
}

/// The reading of a multi-threaded runtime serving one lb
/// (serving threads with runtimes of their own keep theirs thread-local).
#[derive(Debug, Default)]
pub struct Lag {
    due: AtomicU64,
    late_at: AtomicU64,
    late_by: AtomicU64,
}

impl Lag {
    /// Whether an answer that `took` this long, read at `now_ns`
    /// (`clock_ns`), measured the lb's own lateness rather than the backend:
    /// the calling thread's runtime ran late meanwhile (a timer fired late,
    /// or the pending one is overdue) by more than [`LATE`], and the answer
    /// took less than a few times that. Never where no [`watch`] runs.
    pub fn is_own_wait(&self, took: Duration, now_ns: u64) -> bool {
        let sent_ns = now_ns.saturating_sub(took.as_nanos().min(u128::from(u64::MAX)) as u64);
        let late = self.reading().late_since(sent_ns, now_ns);
        late > LATE && took < late * WAKE_UPS
    }

    fn reading(&self) -> Reading {
        let own = OWN.with(Cell::get);
        if own.due != 0 {
            return own;
        }
        Reading {
            due: self.due.load(Ordering::Relaxed),
            late_at: self.late_at.load(Ordering::Relaxed),
            late_by: self.late_by.load(Ordering::Relaxed),
        }
    }

    fn store(&self, own: bool, reading: Reading) {
        if own {
            OWN.with(|r| r.set(reading));
        } else {
            self.late_by.store(reading.late_by, Ordering::Relaxed);
            self.late_at.store(reading.late_at, Ordering::Relaxed);
            self.due.store(reading.due, Ordering::Relaxed);
        }
    }
}

/// Watches the current runtime into `lag` until dropped; one per runtime.
pub async fn watch(lag: Arc<Lag>) {
    let own = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread;
    let _reset = Reset {
        lag: lag.clone(),
        own,
    };
    let mut reading = Reading::default();
    let mut was_late = false;
    loop {
        reading.due = clock_ns_at(Instant::now() + PERIOD);
        lag.store(own, reading);
        tokio::time::sleep(PERIOD).await;
        let now = clock_ns();
        let late_by = now.saturating_sub(reading.due).saturating_sub(GRAIN_NS);
        let late = late_by > LATE.as_nanos() as u64;
        if late {
            // A spell of late wakes keeps its worst.
            reading.late_by = if was_late {
                reading.late_by.max(late_by)
            } else {
                late_by
            };
            reading.late_at = now;
        }
        was_late = late;
    }
}

/// A stopped watch leaves no reading behind (its deadline would otherwise
/// read as ever more overdue).
struct Reset {
    lag: Arc<Lag>,
    own: bool,
}

impl Drop for Reset {
    fn drop(&mut self) {
        self.lag.store(self.own, Reading::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn lateness_counts_from_a_late_wake_since_the_send_or_an_overdue_timer() {
        let r = Reading {
            due: 100 * MS,
            late_at: 50 * MS,
            late_by: 20 * MS,
        };
        // The late wake at 50 ms came before the request was sent at 60 ms,
        // and the timer is not overdue past the clock's grain.
        assert_eq!(r.late_since(60 * MS, 90 * MS), Duration::ZERO);
        assert_eq!(r.late_since(60 * MS, 101 * MS), Duration::ZERO);
        // Sent before that late wake.
        assert_eq!(r.late_since(40 * MS, 90 * MS), Duration::from_millis(20));
        // The thread has not run its timer for 30 ms past its deadline.
        assert_eq!(r.late_since(60 * MS, 131 * MS), Duration::from_millis(30));
        assert_eq!(Reading::default().late_since(0, 500 * MS), Duration::ZERO);
    }

    #[test]
    fn an_answer_much_slower_than_the_lateness_is_the_backends() {
        let lag = Lag::default();
        lag.store(
            false,
            Reading {
                due: 100 * MS,
                late_at: 90 * MS,
                late_by: 10 * MS,
            },
        );
        let ms = Duration::from_millis;
        // Sent at 65 ms, before the late wake at 90 ms.
        assert!(lag.is_own_wait(ms(30), 95 * MS));
        // 200 ms: far past four times the 10 ms of lateness.
        assert!(!lag.is_own_wait(ms(200), 95 * MS));
        // Sent at 92 ms, after the late spell: the backend's.
        assert!(!lag.is_own_wait(ms(3), 95 * MS));
        // Lateness within the margin is not the lb's.
        lag.store(
            false,
            Reading {
                due: 100 * MS,
                late_at: 90 * MS,
                late_by: MS,
            },
        );
        assert!(!lag.is_own_wait(ms(15), 95 * MS));
    }

    #[test]
    fn a_thread_busy_for_50_ms_ran_late_and_is_on_time_once_idle() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let lag = Arc::new(Lag::default());
        // Whether an answer sent at `since` and read now was the lb's wait.
        let own_wait = |since: u64| {
            let now = clock_ns();
            lag.is_own_wait(Duration::from_nanos(now - since), now)
        };
        let within = |secs| Instant::now() + Duration::from_secs(secs);
        rt.block_on(async {
            let watching = tokio::spawn(watch(lag.clone()));
            let deadline = within(10);
            while lag.reading().due == 0 {
                assert!(Instant::now() < deadline, "the watch never started");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let before = clock_ns();
            // The thread is busy (as with a burst of handshakes): nothing
            // else runs on it for 50 ms.
            std::thread::sleep(Duration::from_millis(50));
            assert!(own_wait(before), "overdue timer unseen");
            // Once the timer has fired (late), the wake is remembered.
            let deadline = within(10);
            while lag.reading().late_at < before {
                assert!(Instant::now() < deadline, "the late wake never came");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert!(own_wait(before), "late wake unseen");
            let late_by = Duration::from_nanos(lag.reading().late_by);
            assert!(late_by >= Duration::from_millis(30), "late by {late_by:?}");
            // Much longer than that lateness: the backend's.
            assert!(!lag.is_own_wait(late_by * 5, clock_ns()));
            // Idle again: what is sent from then on is not the lb's wait
            // (polled: other tests share the machine's cores, and a thread
            // waiting for one does run late).
            let deadline = within(10);
            loop {
                let after = clock_ns();
                tokio::time::sleep(PERIOD * 3).await;
                if !own_wait(after) {
                    break;
                }
                assert!(Instant::now() < deadline, "still late after 10 s");
            }
            watching.abort();
            let _ = watching.await;
            assert_eq!(
                lag.reading().late_since(0, clock_ns() + 10_000 * MS),
                Duration::ZERO
            );
        });
    }
}
