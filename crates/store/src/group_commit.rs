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
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;
use weir_core::{NewEvent, RequestLogEntry, Store, StoreError, TaskId, TaskInsertParams};

/// Rows waiting for the writer; past this, callers wait (back-pressure) rather
/// than memory growing without bound.
const QUEUE_CAPACITY: usize = 16_384;
/// Event batches committing at once: ingest is bound by commit round trips
/// (the database flushes its log per commit), so a few overlap.
const EVENT_PIPELINES: usize = 3;

type Ack<O> = oneshot::Sender<Result<O, StoreError>>;
/// A batch's write: one output per row, in order.
type WriteFuture<O> = Pin<Box<dyn Future<Output = Result<Vec<O>, StoreError>> + Send>>;
type WriteFn<T, O> = Box<dyn Fn(Arc<dyn Store>, Vec<T>) -> WriteFuture<O> + Send + Sync>;

/// Handle to a writer task. Cheap to clone; the task ends (after writing
/// everything queued) when the last handle is dropped. Each row's writer
/// answers with an `O` (the task id a submission came to, for tasks).
pub struct GroupCommit<T, O = ()> {
    tx: mpsc::Sender<(T, Option<Ack<O>>)>,
}

impl<T, O> Clone for GroupCommit<T, O> {
    fn clone(&self) -> Self {
        GroupCommit {
            tx: self.tx.clone(),
        }
    }
}

/// Group commit for the request log.
pub type RequestLogWriter = GroupCommit<RequestLogEntry>;
/// Group commit for task submissions; each answers with the id of the task
/// that stands for it (another one's, when a duplicate was folded into it).
pub type TaskInsertWriter = GroupCommit<TaskInsertParams, TaskId>;
/// Group commit for ingested events: one item is one request's events, so a
/// request's batch is committed whole or not at all.
pub type EventWriter = GroupCommit<Vec<NewEvent>>;

impl GroupCommit<RequestLogEntry> {
    /// Starts the request-log writer on the current runtime.
    pub fn spawn(store: Arc<dyn Store>, max_batch: usize) -> (Self, JoinHandle<()>) {
        Self::spawn_with(
            store,
            max_batch,
            1,
            Box::new(|store, rows| {
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

impl GroupCommit<TaskInsertParams, TaskId> {
    /// Starts the task-insert writer on the current runtime.
    pub fn spawn_tasks(store: Arc<dyn Store>, max_batch: usize) -> (Self, JoinHandle<()>) {
        Self::spawn_with(
            store,
            max_batch,
            1,
            Box::new(|store, rows| Box::pin(async move { store.task_insert_many(&rows).await })),
        )
    }
}

impl GroupCommit<Vec<NewEvent>> {
    /// Starts the event writer on the current runtime. `max_batch` counts
    /// requests; their events go to the store in one call.
    pub fn spawn_events(store: Arc<dyn Store>, max_batch: usize) -> (Self, JoinHandle<()>) {
        Self::spawn_with(
            store,
            max_batch,
            EVENT_PIPELINES,
            Box::new(|store, batches| {
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
        store: Arc<dyn Store>,
        max_batch: usize,
        pipelines: usize,
        write: WriteFn<T, O>,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let rx = Arc::new(Mutex::new(rx));
        let write = Arc::new(write);
        let loops: Vec<_> = (0..pipelines.max(1))
            .map(|_| {
                tokio::spawn(write_loop(
                    store.clone(),
                    rx.clone(),
                    max_batch.max(1),
                    write.clone(),
                ))
            })
            .collect();
        let handle = tokio::spawn(async move {
            for l in loops {
                let _ = l.await;
            }
        });
        (GroupCommit { tx }, handle)
    }

    /// Appends a row and waits until it is committed.
    pub async fn write(&self, row: T) -> Result<O, StoreError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((row, Some(ack)))
            .await
            .map_err(|_| StoreError::Unavailable("group-commit writer stopped".into()))?;
        done.await
            .map_err(|_| StoreError::Unavailable("group-commit writer stopped".into()))?
    }

    /// Appends a row without waiting for the commit (for requests whose answer
    /// does not depend on the row). Waits only if the queue is full.
    pub async fn write_detached(&self, row: T) {
        if self.tx.send((row, None)).await.is_err() {
            tracing::warn!("group-commit writer stopped; a row was not written");
        }
    }
}

type SharedReceiver<T, O> = Arc<Mutex<mpsc::Receiver<(T, Option<Ack<O>>)>>>;

async fn write_loop<T, O: Clone>(
    store: Arc<dyn Store>,
    rx: SharedReceiver<T, O>,
    max_batch: usize,
    write: Arc<WriteFn<T, O>>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    // The lock is held only while gathering; the commit runs without it.
    while rx.lock().await.recv_many(&mut batch, max_batch).await > 0 {
        let (rows, acks): (Vec<T>, Vec<Option<Ack<O>>>) = batch.drain(..).unzip();
        let n = rows.len();
        match write(store.clone(), rows).await {
            Ok(outputs) if outputs.len() == n => {
                for (ack, out) in acks.into_iter().zip(outputs) {
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(out));
                    }
                }
            }
            Ok(outputs) => {
                let e = StoreError::Internal(format!(
                    "group commit: {} answers for {n} rows",
                    outputs.len()
                ));
                for ack in acks.into_iter().flatten() {
                    let _ = ack.send(Err(e.clone()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = n, "group-commit batch failed");
                for ack in acks.into_iter().flatten() {
                    let _ = ack.send(Err(e.clone()));
                }
            }
        }
    }
}
