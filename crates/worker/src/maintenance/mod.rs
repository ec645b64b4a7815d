//! Background services a worker runs beside its claim loop, one file each.
//!
//! Each service runs as a task of its own, on its own interval, and stops
//! when the worker begins to drain (River's shape): a slow prune or a
//! scheduler pass waiting on a lock never delays a claim, a completion or a
//! heartbeat. A pass in progress when the stop comes is dropped; the next
//! worker's pass does its work.

pub mod cleaner;
pub mod rescuer;
pub mod scheduler;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use weir_core::{Leadership, Store, TaskQueue};

use crate::WorkerConfig;

/// Runs `pass` every `every` (the first at once) until `stop`.
fn every<F, Fut>(every: Duration, stop: CancellationToken, mut pass: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticks = interval(every);
        // A pass longer than the interval is followed by the next at once,
        // not by a burst of missed ones.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = pass() => {}
            }
        }
    })
}

/// Starts the rescuer, the cleaner and (with periodic jobs) the scheduler;
/// each ends when `stop` is cancelled.
pub fn spawn(
    store: Arc<dyn Store>,
    config: Arc<WorkerConfig>,
    stop: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut services = Vec::with_capacity(3);
    let s: Arc<dyn TaskQueue> = store.clone();
    services.push(every(config.rescue_interval, stop.clone(), move || {
        let store = s.clone();
        async move {
            rescuer::rescue_once(&store).await;
        }
    }));
    let (s, c): (Arc<dyn Leadership>, _) = (store.clone(), config.clone());
    services.push(every(
        config.maintenance_interval,
        stop.clone(),
        move || {
            let (store, config) = (s.clone(), c.clone());
            async move {
                cleaner::clean_once(&store, &config).await;
            }
        },
    ));
    if !config.periodic.is_empty() {
        let scheduler = Arc::new(tokio::sync::Mutex::new(scheduler::Scheduler::default()));
        let c = config.clone();
        services.push(every(config.scheduler_interval, stop, move || {
            let (store, config, scheduler) = (store.clone(), c.clone(), scheduler.clone());
            async move {
                scheduler
                    .lock()
                    .await
                    .tick(
                        &store,
                        &config.worker_id,
                        &config.periodic,
                        config.scheduler_interval,
                        &config.task_types,
                    )
                    .await;
            }
        }));
    }
    services
}
