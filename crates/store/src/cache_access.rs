//! Cache read statistics without a write per read.
//!
//! A cache hit is a read; counting it with an UPDATE per request would turn
//! every cached answer into a write (on SQLite, a turn on the single writer).
//! Instead each API node gathers hits and misses in memory and records them
//! in one call every flush interval. Counts in memory when a process dies
//! (at most one interval's worth) are lost: they are statistics, not data.
//!
//! Reads are counted where they happen, per entry, so what is held between
//! flushes grows with the entries read, not with the reads: a flush that
//! waits on a slow or absent database does not let a busy node's memory
//! grow with every cached answer it serves meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weir_core::{CacheAccessParams, ResultCache};

/// Entries counted between two flushes; reads of further entries are not
/// counted until the next flush (statistics, bounded like the rest).
const MAX_ENTRIES: usize = 65_536;

/// Reads counted since the last flush.
#[derive(Default)]
struct Counts {
    /// Per entry read: reads, and the last read's time.
    hits: HashMap<String, (i64, DateTime<Utc>)>,
    misses: i64,
}

impl Counts {
    fn hit(&mut self, key: &str, at: DateTime<Utc>) {
        if let Some(e) = self.hits.get_mut(key) {
            e.0 += 1;
            e.1 = e.1.max(at);
        } else if self.hits.len() < MAX_ENTRIES {
            self.hits.insert(key.to_string(), (1, at));
        }
    }

    /// What to record, leaving these counts empty; `None` when nothing was read.
    fn take(&mut self) -> Option<CacheAccessParams> {
        if self.hits.is_empty() && self.misses == 0 {
            return None;
        }
        Some(CacheAccessParams {
            hits: self.hits.drain().map(|(k, (n, at))| (k, n, at)).collect(),
            misses: std::mem::take(&mut self.misses),
        })
    }
}

/// Handle to the recorder task; cheap to clone. The task flushes what it holds
/// and ends when the last handle is dropped.
#[derive(Clone)]
pub struct CacheAccessRecorder {
    counts: Arc<Mutex<Counts>>,
    /// Never sent on: the task sees the channel close when the last handle
    /// is dropped.
    _alive: mpsc::Sender<()>,
}

impl CacheAccessRecorder {
    pub fn spawn(store: Arc<dyn ResultCache>, flush_every: Duration) -> (Self, JoinHandle<()>) {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let (alive, closed) = mpsc::channel(1);
        let task = tokio::spawn(run(store, counts.clone(), closed, flush_every));
        let recorder = CacheAccessRecorder {
            counts,
            _alive: alive,
        };
        (recorder, task)
    }

    pub fn hit(&self, key: &str) {
        self.lock().hit(key, Utc::now());
    }

    pub fn miss(&self) {
        self.lock().misses += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Counters stay usable after a panic elsewhere held the lock.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn run(
    store: Arc<dyn ResultCache>,
    counts: Arc<Mutex<Counts>>,
    mut closed: mpsc::Receiver<()>,
    flush_every: Duration,
) {
    let mut tick = tokio::time::interval(flush_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let open = tokio::select! {
            _ = closed.recv() => false,
            _ = tick.tick() => true,
        };
        let taken = counts.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(params) = taken {
            if let Err(e) = store.cache_record_access(&params).await {
                tracing::debug!(error = %e, "cache statistics not recorded");
            }
        }
        if !open {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use serde_json::Value;
    use weir_core::{CacheStats, StoreError};

    /// A cache whose recording waits until `release` is notified, and keeps
    /// what it was asked to record.
    #[derive(Default)]
    struct StalledCache {
        release: tokio::sync::Notify,
        recorded: Mutex<Vec<CacheAccessParams>>,
    }

    #[async_trait]
    impl ResultCache for StalledCache {
        async fn cache_get(&self, _: &str, _: DateTime<Utc>) -> Result<Option<Value>, StoreError> {
            Ok(None)
        }

        async fn cache_record_access(&self, params: &CacheAccessParams) -> Result<(), StoreError> {
            self.release.notified().await;
            self.recorded.lock().unwrap().push(params.clone());
            Ok(())
        }

        async fn cache_stats(&self, _: i64) -> Result<CacheStats, StoreError> {
            Err(StoreError::Internal("not kept".into()))
        }
    }

    /// Every read went into an unbounded channel, drained only between
    /// flushes: while a flush waited on the database, each cached answer
    /// served added an event (its key copied) to memory.
    #[tokio::test]
    async fn regression_reads_during_a_stalled_flush_hold_one_entry_per_key() {
        let cache = Arc::new(StalledCache::default());
        let (recorder, task) = CacheAccessRecorder::spawn(cache.clone(), Duration::from_millis(1));
        recorder.hit("first");
        // The first flush takes "first" and stalls in the database.
        wait_until(|| recorder.lock().hits.is_empty()).await;
        for _ in 0..100_000 {
            recorder.hit("hot");
            recorder.miss();
        }
        {
            let held = recorder.lock();
            assert_eq!(held.hits.len(), 1);
            assert_eq!(held.hits["hot"].0, 100_000);
            assert_eq!(held.misses, 100_000);
        }
        // The last handle gone, what is held is flushed once the database answers.
        drop(recorder);
        cache.release.notify_one();
        cache.release.notify_one();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        let recorded = cache.recorded.lock().unwrap();
        let hot: i64 = recorded
            .iter()
            .flat_map(|p| &p.hits)
            .filter(|(k, ..)| k == "hot")
            .map(|(_, n, _)| n)
            .sum();
        let misses: i64 = recorded.iter().map(|p| p.misses).sum();
        assert_eq!((hot, misses), (100_000, 100_000));
    }

    #[test]
    fn entries_past_the_bound_are_not_counted() {
        let mut counts = Counts::default();
        let now = Utc::now();
        for i in 0..MAX_ENTRIES + 10 {
            counts.hit(&format!("k{i}"), now);
        }
        counts.hit("k0", now);
        assert_eq!(counts.hits.len(), MAX_ENTRIES);
        assert_eq!(counts.hits["k0"].0, 2);
    }

    /// Yields until `done` holds, within a deadline.
    async fn wait_until(done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "condition never held");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
