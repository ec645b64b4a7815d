//! The cleaner: deletes finished tasks older than the retention, expired cache
//! entries, and marks workers that stopped heartbeating offline. Every worker
//! runs it on a timer, but only the holder of the `maintenance` leader lease
//! (a row with an expiry, renewed each pass) does the work, so the cluster
//! cleans once, not once per worker.

use std::sync::Arc;

use chrono::Utc;
use weir_core::{LeaderAcquireParams, Leadership, MaintenancePruneParams};

use crate::WorkerConfig;

/// Rows of each kind one pass deletes at most (keeps transactions short; the
/// next pass takes the rest).
const PRUNE_BATCH: i64 = 10_000;

/// Workers this cleaner found silent past `worker_offline_after` without
/// having said they stopped (crashed, killed, hung or cut off) and marked
/// offline.
const MARKED_OFFLINE_METRIC: &str = "weir_workers_marked_offline_total";

/// One pass: take or renew the lease, and prune if it is ours. Returns
/// whether this worker was the leader.
pub async fn clean_once(store: &Arc<dyn Leadership>, config: &WorkerConfig) -> bool {
    // On every worker from its first pass, at 0 until it counts one: the
    // leader can change, and a rate needs the series before its first rise.
    let marked_offline = metrics::counter!(MARKED_OFFLINE_METRIC);
    let now = Utc::now();
    let lease = LeaderAcquireParams {
        name: "maintenance".into(),
        holder: config.worker_id.clone(),
        now,
        // Outlives a missed pass or two, so leadership does not flap.
        ttl: config.maintenance_interval * 3,
    };
    match store.leader_acquire(lease).await {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            tracing::warn!(error = %e, "maintenance lease check failed");
            return false;
        }
    }
    let params = MaintenancePruneParams {
        finished_before: now - to_chrono(config.retention),
        dead_before: Some(now - to_chrono(config.retain_dead)),
        cancelled_before: Some(now - to_chrono(config.retain_cancelled)),
        now,
        workers_silent_since: now - to_chrono(config.worker_offline_after),
        limit: PRUNE_BATCH,
    };
    match store.maintenance_prune(params).await {
        Ok(r) => {
            marked_offline.increment(r.workers_marked_offline);
            if r.tasks_deleted
                + r.cache_deleted
                + r.workers_marked_offline
                + r.idempotency_keys_deleted
                > 0
            {
                tracing::info!(
                    tasks = r.tasks_deleted,
                    cache = r.cache_deleted,
                    workers_offline = r.workers_marked_offline,
                    idempotency_keys = r.idempotency_keys_deleted,
                    "maintenance pass"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "maintenance pass failed"),
    }
    true
}

fn to_chrono(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
