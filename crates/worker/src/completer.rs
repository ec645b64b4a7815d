//! Recording finished attempts in batches, off the claim path.
//!
//! The worker loop hands each finished attempt to the completer and goes
//! straight back to claiming; the completer writes whatever has gathered in
//! one `task_complete_many` call (one statement on PostgreSQL) while the loop
//! runs. Batching completions was worth 4-5× to River; keeping them off the
//! claim loop lets a freed slot be refilled after one round trip, not two.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weir_core::{CompletionOutcome, TaskCompletion, TaskQueue};

/// Most completions one call records.
const MAX_BATCH: usize = 1024;

pub struct Completer {
    tx: mpsc::UnboundedSender<TaskCompletion>,
    task: JoinHandle<()>,
}

impl Completer {
    /// Starts the completer; on a store error it keeps the batch and tries
    /// again after `retry_pause`.
    pub fn spawn(store: Arc<dyn TaskQueue>, worker_id: String, retry_pause: Duration) -> Completer {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(store, rx, worker_id, retry_pause));
        Completer { tx, task }
    }

    /// Queues one completion.
    pub fn send(&self, completion: TaskCompletion) {
        // The receiver lives until `finish`; a send cannot fail before then.
        let _ = self.tx.send(completion);
    }

    /// Records everything queued, waiting at most `bound`. Completions still
    /// unrecorded then are dropped: their leases lapse and the rescuer runs
    /// the tasks again (at least once, never lost).
    pub async fn finish(self, bound: Duration) {
        drop(self.tx);
        let mut task = self.task;
        if tokio::time::timeout(bound, &mut task).await.is_err() {
            tracing::warn!("completions not recorded before shutdown; their tasks will be rescued");
            task.abort();
        }
    }
}

async fn run(
    store: Arc<dyn TaskQueue>,
    mut rx: mpsc::UnboundedReceiver<TaskCompletion>,
    worker_id: String,
    retry_pause: Duration,
) {
    let mut batch = Vec::with_capacity(64);
    loop {
        if batch.is_empty() {
            if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
        } else {
            // Retrying: take in what arrived meanwhile too.
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
        }
        match store.task_complete_many(&batch).await {
            Ok(outcomes) => {
                for (c, o) in batch.iter().zip(outcomes) {
                    if o == CompletionOutcome::LeaseLost {
                        tracing::warn!(task = %c.id, "completion rejected: lease lost to another attempt");
                    }
                }
                batch.clear();
            }
            Err(e) => {
                tracing::warn!(worker = %worker_id, error = %e, pending = batch.len(), "recording completions failed; will retry");
                tokio::time::sleep(retry_pause).await;
            }
        }
    }
}
