//! Cache read statistics without a write per read.
//!
//! A cache hit is a read; counting it with an UPDATE per request would turn
//! every cached answer into a write (on SQLite, a turn on the single writer).
//! Instead each API node gathers hits and misses in memory and records them
//! in one call every flush interval. Counts in memory when a process dies
//! (at most one interval's worth) are lost: they are statistics, not data.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weir_core::{CacheAccessParams, ResultCache};

enum Event {
    Hit(String, DateTime<Utc>),
    Miss,
}

/// Handle to the recorder task; cheap to clone. The task flushes what it holds
/// and ends when the last handle is dropped.
#[derive(Clone)]
pub struct CacheAccessRecorder {
    tx: mpsc::UnboundedSender<Event>,
}

impl CacheAccessRecorder {
    pub fn spawn(store: Arc<dyn ResultCache>, flush_every: Duration) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(store, rx, flush_every));
        (CacheAccessRecorder { tx }, task)
    }

    pub fn hit(&self, key: &str) {
        let _ = self.tx.send(Event::Hit(key.to_string(), Utc::now()));
    }

    pub fn miss(&self) {
        let _ = self.tx.send(Event::Miss);
    }
}

async fn run(
    store: Arc<dyn ResultCache>,
    mut rx: mpsc::UnboundedReceiver<Event>,
    flush_every: Duration,
) {
    let mut hits: HashMap<String, (i64, DateTime<Utc>)> = HashMap::new();
    let mut misses = 0i64;
    let mut tick = tokio::time::interval(flush_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let open = tokio::select! {
            event = rx.recv() => match event {
                Some(Event::Hit(key, at)) => {
                    let e = hits.entry(key).or_insert((0, at));
                    e.0 += 1;
                    e.1 = e.1.max(at);
                    continue;
                }
                Some(Event::Miss) => {
                    misses += 1;
                    continue;
                }
                None => false,
            },
            _ = tick.tick() => true,
        };
        if !hits.is_empty() || misses > 0 {
            let params = CacheAccessParams {
                hits: hits.drain().map(|(k, (n, at))| (k, n, at)).collect(),
                misses: std::mem::take(&mut misses),
            };
            if let Err(e) = store.cache_record_access(&params).await {
                tracing::debug!(error = %e, "cache statistics not recorded");
            }
        }
        if !open {
            return;
        }
    }
}
