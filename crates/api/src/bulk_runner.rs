//! The background service of every API node that does bulk actions'
//! batches: any node takes an unfinished action no one holds (or whose
//! holder stopped), so one started on a node that restarts resumes.

use std::time::Duration;

use tokio::sync::watch;

use crate::AppState;

/// How often an idle node looks for bulk actions started elsewhere (or
/// left by a node that stopped).
const IDLE_POLL: Duration = Duration::from_secs(1);

pub(crate) async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    // Two processes may share a node id (two `weir up` on one database):
    // the process id keeps holders apart.
    let holder = format!("{}/{}", state.config.node_id, std::process::id());
    let batches = metrics::counter!("weir_bulk_batches_total");
    while !*stop.borrow() {
        match state.store.bulk_work(&holder, chrono::Utc::now()).await {
            Ok(Some(job)) => {
                batches.increment(1);
                if job.is_done() {
                    tracing::info!(bulk = %job.id, action = job.action.as_str(),
                        changed = job.changed, skipped = job.skipped, "bulk action done");
                }
                // Claims and requests get the database between batches.
                tokio::task::yield_now().await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "bulk action batch failed; retrying"),
        }
        tokio::select! {
            () = state.bulk_started.notified() => {}
            () = tokio::time::sleep(IDLE_POLL) => {}
            _ = stop.changed() => {}
        }
    }
}
