//! Group commit for the request log.
//!
//! Every API request appends a row; one transaction per row caps a node at the
//! database's commit rate. Instead, callers hand rows to one writer task, which
//! takes whatever has queued up (up to `max_batch`), writes it in one transaction
//! and then answers every caller. Under light load a batch is one row and adds no
//! delay; under heavy load batches grow by themselves while the previous commit runs.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use weir_core::{RequestLogEntry, Store, StoreError};

/// Rows waiting for the writer; past this, callers wait (back-pressure) rather
/// than memory growing without bound.
const QUEUE_CAPACITY: usize = 16_384;

type Ack = oneshot::Sender<Result<(), StoreError>>;

/// Handle to the writer task. Cheap to clone; the task ends (after writing
/// everything queued) when the last handle is dropped.
#[derive(Clone)]
pub struct RequestLogWriter {
    tx: mpsc::Sender<(RequestLogEntry, Option<Ack>)>,
}

impl RequestLogWriter {
    /// Starts the writer task on the current runtime.
    pub fn spawn(store: Arc<dyn Store>, max_batch: usize) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let handle = tokio::spawn(write_loop(store, rx, max_batch.max(1)));
        (RequestLogWriter { tx }, handle)
    }

    /// Appends a row and waits until it is committed.
    pub async fn write(&self, entry: RequestLogEntry) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((entry, Some(ack)))
            .await
            .map_err(|_| StoreError::Unavailable("request log writer stopped".into()))?;
        done.await
            .map_err(|_| StoreError::Unavailable("request log writer stopped".into()))?
    }

    /// Appends a row without waiting for the commit (for requests whose answer
    /// does not depend on the row). Waits only if the queue is full.
    pub async fn write_detached(&self, entry: RequestLogEntry) {
        if self.tx.send((entry, None)).await.is_err() {
            tracing::warn!("request log writer stopped; a request row was not logged");
        }
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<(RequestLogEntry, Option<Ack>)>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut entries = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        entries.extend(batch.iter().map(|(e, _)| e.clone()));
        let result = store.request_log_insert_many(&entries).await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, rows = entries.len(), "request log batch failed");
        }
        for (_, ack) in batch.drain(..) {
            if let Some(ack) = ack {
                let _ = ack.send(result.clone());
            }
        }
        entries.clear();
    }
}
