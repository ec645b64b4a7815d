//! Group commit: many concurrent writers, few transactions.
//!
//! Every API request appends a request-log row, and every submission inserts a
//! task; one transaction per row caps a node at the database's commit rate
//! (SQLite has one writer; PostgreSQL flushes its WAL per commit). Instead,
//! callers hand rows to one writer task per kind, which takes whatever has
//! queued up (up to `max_batch`), writes it in one statement and transaction,
//! and then answers every caller. Under light load a batch is one row and adds
//! no delay; under heavy load batches grow by themselves while the previous
//! commit runs. A writer may run several such loops over one queue
//! (`pipelines`): while one batch commits, the next is gathered and sent, so
//! a node is not capped at one batch per commit round trip.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;
use weir_core::{
    EventLog, NewEvent, Queued, RequestLog, RequestLogEntry, StoreError, TaskInsertParams,
    TaskQueue,
};

/// Rows waiting for the writer; past this, callers wait (back-pressure) rather
/// than memory growing without bound.
const QUEUE_CAPACITY: usize = 16_384;
/// Event batches committing at once: large batches are bound by commit round
/// trips (the database flushes its log per commit), so a few overlap.
const EVENT_PIPELINES: usize = 3;
/// Only batches of at least this many events overlap. Small ones commit one
/// at a time, so rows queue up behind a commit and the next one is bigger:
/// overlapping small commits cost the database a transaction each (figures
/// in docs/BENCHMARKS.md, "Group commit's thresholds").
const EVENT_OVERLAP_FROM: usize = 256;

/// A caller waiting for its row's commit.
struct Waiter<O> {
    ack: oneshot::Sender<Result<O, StoreError>>,
    /// Decided once, by whichever comes first: the writer taking the row
    /// into a batch (the caller then waits for that batch's outcome) or the
    /// caller's budget running out (the row is then never written). Without
    /// it a caller could be told "not committed" about a row its batch did
    /// commit, and a client that retries would queue the task twice.
    fate: Arc<AtomicU8>,
}

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

impl<O> Waiter<O> {
    /// Takes the row into a batch, unless its caller gave up or went away.
    fn take(&self) -> bool {
        !self.ack.is_closed()
            && self
                .fate
                .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

/// How long the request-log writer lets a batch of rows nobody waits for
/// grow before committing it: many small commits of detached rows cost the
/// database a transaction each (docs/BENCHMARKS.md, "Group commit's
/// thresholds"). A row someone waits for (`GET /`) ends the linger. Rows
/// not yet committed are lost in a crash: the log promises no client a row.
const REQUEST_LOG_LINGER: Duration = Duration::from_millis(10);

/// How much of a batch a row is (for when batches may overlap).
type Weigh<T> = fn(&T) -> usize;
/// A batch's write: one output per row, in order.
type WriteFuture<O> = Pin<Box<dyn Future<Output = Result<Vec<O>, StoreError>> + Send>>;
type WriteFn<T, O> = Box<dyn Fn(Vec<T>) -> WriteFuture<O> + Send + Sync>;

/// Handle to a writer task. Cheap to clone; the task ends (after writing
/// everything queued) when the last handle is dropped. Each row's writer
/// answers with an `O` (the task id a submission came to, for tasks).
pub struct GroupCommit<T, O = ()> {
    tx: mpsc::Sender<(T, Option<Waiter<O>>)>,
    /// Longest a [`GroupCommit::write`] waits for its commit; `None`: no limit.
    budget: Option<Duration>,
}

impl<T, O> Clone for GroupCommit<T, O> {
    fn clone(&self) -> Self {
        GroupCommit {
            tx: self.tx.clone(),
            budget: self.budget,
        }
    }
}

impl<T, O> GroupCommit<T, O> {
    /// The same writer, whose [`GroupCommit::write`] gives up after
    /// `budget` spent waiting for its row to be taken into a batch: a caller
    /// queued behind a batch stuck on an unreachable database gets an error
    /// in time instead of waiting for it, and its row is never written. A
    /// row already taken is answered with its batch's outcome, however long
    /// the batch takes (the store's own retry budget bounds that).
    pub fn within(mut self, budget: Duration) -> Self {
        self.budget = Some(budget);
        self
    }
}

/// Group commit for the request log.
pub type RequestLogWriter = GroupCommit<RequestLogEntry>;
/// Group commit for task submissions; each answers with the id of the task
/// that stands for it (another one's, when a duplicate was folded into it),
/// or with its cached result.
pub type TaskInsertWriter = GroupCommit<TaskInsertParams, Queued>;
/// Group commit for ingested events: one item is one request's events, so a
/// request's batch is committed whole or not at all.
pub type EventWriter = GroupCommit<Vec<NewEvent>>;

impl GroupCommit<RequestLogEntry> {
    /// Starts the request-log writer on the current runtime.
    pub fn spawn(store: Arc<dyn RequestLog>, max_batch: usize) -> (Self, JoinHandle<()>) {
        Self::spawn_with(
            max_batch,
            1,
            None,
            Some(REQUEST_LOG_LINGER),
            Box::new(move |rows| {
                let store = store.clone();
                Box::pin(async move {
                    let n = rows.len();
                    store
                        .request_log_insert_many(&rows)
                        .await
                        .map(|_| vec![(); n])
                })
            }),
        )
    }
}

impl GroupCommit<TaskInsertParams, Queued> {
    /// Starts the task-insert writer on the current runtime: submissions,
    /// answered from the result cache where it holds theirs.
    pub fn spawn_tasks(store: Arc<dyn TaskQueue>, max_batch: usize) -> (Self, JoinHandle<()>) {
        Self::spawn_with(
            max_batch,
            1,
            None,
            None,
            Box::new(move |rows| {
                let store = store.clone();
                Box::pin(async move { store.task_submit_many(&rows).await })
            }),
        )
    }
}

impl GroupCommit<Vec<NewEvent>> {
    /// Starts the event writer on the current runtime. `max_batch` counts
    /// requests; their events go to the store in one call.
    pub fn spawn_events(store: Arc<dyn EventLog>, max_batch: usize) -> (Self, JoinHandle<()>) {
        Self::spawn_with(
            max_batch,
            EVENT_PIPELINES,
            Some((Vec::len, EVENT_OVERLAP_FROM)),
            None,
            Box::new(move |batches| {
                let store = store.clone();
                Box::pin(async move {
                    let n = batches.len();
                    let events: Vec<NewEvent> = batches.into_iter().flatten().collect();
                    store.event_insert_many(&events).await.map(|_| vec![(); n])
                })
            }),
        )
    }
}

impl<T: Send + 'static, O: Clone + Send + 'static> GroupCommit<T, O> {
    fn spawn_with(
        max_batch: usize,
        pipelines: usize,
        overlap: Option<(Weigh<T>, usize)>,
        linger: Option<Duration>,
        write: WriteFn<T, O>,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let rx = Arc::new(Mutex::new(rx));
        let write = Arc::new(write);
        let loops: Vec<_> = (0..pipelines.max(1))
            .map(|_| {
                tokio::spawn(write_loop(
                    rx.clone(),
                    max_batch.max(1),
                    overlap,
                    linger,
                    write.clone(),
                ))
            })
            .collect();
        let handle = tokio::spawn(async move {
            for l in loops {
                let _ = l.await;
            }
        });
        (GroupCommit { tx, budget: None }, handle)
    }

    /// Appends a row and waits until it is committed. With a budget, a row
    /// not yet taken into a batch when it is spent is given up on:
    /// [`StoreError::Unavailable`], and the row is never written — so an
    /// error always means "not stored" unless the batch itself failed
    /// ambiguously (a connection lost during its commit).
    pub async fn write(&self, row: T) -> Result<O, StoreError> {
        let stopped = || StoreError::Unavailable("group-commit writer stopped".into());
        let (ack, done) = oneshot::channel();
        let fate = Arc::new(AtomicU8::new(QUEUED));
        let waiter = Waiter {
            ack,
            fate: fate.clone(),
        };
        let queued = async {
            self.tx
                .send((row, Some(waiter)))
                .await
                .map_err(|_| stopped())?;
            done.await.map_err(|_| stopped())?
        };
        let Some(budget) = self.budget else {
            return queued.await;
        };
        tokio::pin!(queued);
        match tokio::time::timeout(budget, &mut queued).await {
            Ok(answer) => answer,
            Err(_) => {
                match fate.compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => Err(StoreError::Unavailable(format!(
                        "not committed within {budget:?}"
                    ))),
                    // Its batch is committing: that outcome is the answer.
                    Err(_) => queued.await,
                }
            }
        }
    }

    /// Appends a row without waiting for the commit (for requests whose answer
    /// does not depend on the row). Waits only if the queue is full.
    pub async fn write_detached(&self, row: T) {
        if self.tx.send((row, None)).await.is_err() {
            tracing::warn!("group-commit writer stopped; a row was not written");
        }
    }

    /// Appends a row without waiting at all; hands it back when the queue is
    /// full (the caller then waits with [`Self::write_detached`], off its
    /// hot path).
    pub fn try_write_detached(&self, row: T) -> Result<(), T> {
        match self.tx.try_send((row, None)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full((row, _))) => Err(row),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("group-commit writer stopped; a row was not written");
                Ok(())
            }
        }
    }
}

type SharedReceiver<T, O> = Arc<Mutex<mpsc::Receiver<(T, Option<Waiter<O>>)>>>;

async fn write_loop<T, O: Clone>(
    rx: SharedReceiver<T, O>,
    max_batch: usize,
    overlap: Option<(Weigh<T>, usize)>,
    linger: Option<Duration>,
    write: Arc<WriteFn<T, O>>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        let mut gathering = rx.lock().await;
        if gathering.recv_many(&mut batch, max_batch).await == 0 {
            break;
        }
        if let Some(linger) = linger {
            if batch.iter().all(|(_, ack)| ack.is_none()) {
                // Gather until the linger ends, the batch is full, or a row
                // someone waits for arrives (it is not kept waiting).
                let until = tokio::time::Instant::now() + linger;
                while batch.len() < max_batch {
                    match tokio::time::timeout_at(until, gathering.recv()).await {
                        Ok(Some(row)) => {
                            let waited_for = row.1.is_some();
                            batch.push(row);
                            if waited_for {
                                break;
                            }
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        // Callers that gave up (their budget spent) or went away are not
        // written for; the others now wait for this batch, whatever it takes.
        batch.retain(|(_, waiter)| waiter.as_ref().is_none_or(Waiter::take));
        if batch.is_empty() {
            continue;
        }
        let (rows, waiters): (Vec<T>, Vec<Option<Waiter<O>>>) = batch.drain(..).unzip();
        // A large batch lets the next loop gather and commit beside it; a
        // small one keeps the queue to itself until it has committed.
        let overlaps =
            overlap.is_some_and(|(weigh, from)| rows.iter().map(weigh).sum::<usize>() >= from);
        let _held = if overlaps {
            drop(gathering);
            None
        } else {
            Some(gathering)
        };
        let n = rows.len();
        match write(rows).await {
            Ok(outputs) if outputs.len() == n => {
                for (waiter, out) in waiters.into_iter().zip(outputs) {
                    if let Some(waiter) = waiter {
                        let _ = waiter.ack.send(Ok(out));
                    }
                }
            }
            Ok(outputs) => {
                let e = StoreError::Internal(format!(
                    "group commit: {} answers for {n} rows",
                    outputs.len()
                ));
                for waiter in waiters.into_iter().flatten() {
                    let _ = waiter.ack.send(Err(e.clone()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = n, "group-commit batch failed");
                for waiter in waiters.into_iter().flatten() {
                    let _ = waiter.ack.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Commits at once, at most, while `n` writers each hand over a `size`-row
    /// item; every commit takes 20 ms (a stand-in for the database's flush).
    async fn peak_overlap(items: usize, size: usize) -> usize {
        let active = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (a, p) = (active.clone(), peak.clone());
        let write: WriteFn<Vec<u8>, ()> = Box::new(move |rows| {
            let (a, p) = (a.clone(), p.clone());
            Box::pin(async move {
                let now = a.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                a.fetch_sub(1, Ordering::SeqCst);
                Ok(vec![(); rows.len()])
            })
        });
        let (writer, task) = GroupCommit::spawn_with(1, 3, Some((Vec::len, 10)), None, write);
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..items {
            let writer = writer.clone();
            calls.spawn(async move { writer.write(vec![0u8; size]).await });
        }
        while let Some(done) = calls.join_next().await {
            done.unwrap().unwrap();
        }
        drop(writer);
        task.await.unwrap();
        peak.load(Ordering::SeqCst)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_batches_commit_one_at_a_time_and_large_ones_overlap() {
        // max_batch 1: every item is its own batch, so only the weight decides.
        assert_eq!(peak_overlap(12, 1).await, 1, "small batches overlapped");
        assert!(
            peak_overlap(12, 50).await > 1,
            "large batches did not overlap"
        );
    }

    /// A one-loop writer whose callers wait at most 3 s, with row 1 handed
    /// to it first (so taken into the first batch), its caller waiting.
    async fn row_1_taken<O: Clone + Send + 'static>(
        write: WriteFn<u32, O>,
    ) -> (
        GroupCommit<u32, O>,
        JoinHandle<()>,
        JoinHandle<Result<O, StoreError>>,
    ) {
        let (writer, task) = GroupCommit::spawn_with(1, 1, None, None, write);
        let writer = writer.within(Duration::from_secs(3));
        let first = tokio::spawn({
            let writer = writer.clone();
            async move { writer.write(1).await }
        });
        tokio::task::yield_now().await;
        (writer, task, first)
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_stuck_behind_a_hung_commit_gives_up_within_its_budget_and_is_not_written() {
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let w = written.clone();
        // The first commit hangs for 10 s (a black-holed database).
        let write: WriteFn<u32, ()> = Box::new(move |rows| {
            let w = w.clone();
            Box::pin(async move {
                if rows.contains(&1) {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                w.lock().unwrap().extend(rows.iter().copied());
                Ok(vec![(); rows.len()])
            })
        });
        let (writer, task, first) = row_1_taken(write).await;
        let started = tokio::time::Instant::now();
        let queued = writer.write(2).await;
        assert!(
            matches!(queued, Err(StoreError::Unavailable(_))),
            "{queued:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        // The first row's batch had started: its caller is told how that
        // batch ended (stored), not "unavailable" at its budget.
        first.await.unwrap().unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        // Only rows someone still waited for when their batch started are
        // written.
        writer.write(3).await.unwrap();
        drop(writer);
        task.await.unwrap();
        assert_eq!(*written.lock().unwrap(), vec![1, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_row_taken_just_before_its_budget_ends_is_answered_stored() {
        // Every commit takes 2 s; the budget is 3 s. The second row waits
        // 2 s behind the first, is taken, and commits at 4 s: past its
        // budget, yet stored — so its caller must hear so.
        let write: WriteFn<u32, u32> = Box::new(|rows| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok(rows)
            })
        });
        let (writer, task, first) = row_1_taken(write).await;
        assert_eq!(writer.write(2).await.unwrap(), 2);
        assert_eq!(first.await.unwrap().unwrap(), 1);
        drop(writer);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn detached_rows_linger_together_and_a_row_waited_for_ends_the_linger() {
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let b = batches.clone();
        let write: WriteFn<u32, ()> = Box::new(move |rows| {
            b.lock().unwrap().push(rows.clone());
            Box::pin(async move { Ok(vec![(); rows.len()]) })
        });
        let linger = Duration::from_millis(10);
        let (writer, task) = GroupCommit::spawn_with(100, 1, None, Some(linger), write);
        let started = tokio::time::Instant::now();
        writer.write_detached(1).await;
        tokio::time::sleep(Duration::from_millis(3)).await;
        writer.write_detached(2).await;
        // Committed when the linger ends, together.
        let deadline = started + Duration::from_secs(1);
        while batches.lock().unwrap().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "never committed");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(started.elapsed() >= linger);
        // A row waited for, arriving while detached ones linger, is written
        // with them at once.
        writer.write_detached(3).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
        let asked = tokio::time::Instant::now();
        writer.write(4).await.unwrap();
        assert!(
            asked.elapsed() < Duration::from_millis(2),
            "{:?}",
            asked.elapsed()
        );
        drop(writer);
        task.await.unwrap();
        assert_eq!(*batches.lock().unwrap(), vec![vec![1, 2], vec![3, 4]]);
    }
}
