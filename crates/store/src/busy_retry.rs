//! Riding out a busy or briefly unreachable database.
//!
//! [`BusyRetryStore`] wraps a store and retries calls that failed with
//! [`StoreError::Unavailable`] (pool exhausted, connections refused, the server
//! restarting) with exponential backoff and full jitter, within a total time
//! budget per call. Past the budget the error goes to the caller, which an API
//! node answers with `503 database_busy` and `Retry-After` — a request never
//! hangs on the database for longer than the budget.
//!
//! Every wrapped call is safe to repeat: reads, fenced completions, inserts
//! that are idempotent by id. A repeated request-log batch may log a row twice
//! when the first commit succeeded but its answer was lost; a row logged twice
//! is better than one lost.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use weir_core::{
    CacheAccessParams, CacheStats, ClaimedTask, CompletionOutcome, FinishedCounts,
    LeaderAcquireParams, MaintenancePruneParams, MaintenancePruneReport, NewEvent, QueueDepth,
    QueueLimits, RequestLogEntry, RequestLogStats, RetryPolicy, Store, StoreError, StoredEvent,
    Task, TaskChange, TaskClaimParams, TaskCompletion, TaskCounts, TaskId, TaskInsertParams,
    TaskLeaseExtendParams, TaskListParams, TaskReleaseParams, TaskRescueParams,
    WorkerHeartbeatParams, WorkerInfo,
};

/// How long and how often to retry.
#[derive(Clone, Copy, Debug)]
pub struct BusyRetry {
    /// Total time one call may take, retries included.
    pub budget: Duration,
    /// Backoff ceilings: `backoff.base` doubling up to `backoff.cap`.
    pub backoff: RetryPolicy,
}

impl Default for BusyRetry {
    fn default() -> Self {
        BusyRetry {
            budget: Duration::from_secs(3),
            backoff: RetryPolicy {
                base: Duration::from_millis(20),
                cap: Duration::from_millis(500),
            },
        }
    }
}

/// A store whose calls retry through `Unavailable` within a budget.
pub struct BusyRetryStore {
    inner: Arc<dyn Store>,
    retry: BusyRetry,
}

impl BusyRetryStore {
    pub fn wrap(inner: Arc<dyn Store>, retry: BusyRetry) -> Arc<dyn Store> {
        Arc::new(BusyRetryStore { inner, retry })
    }

    async fn call<T, F, Fut>(&self, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let deadline = Instant::now() + self.retry.budget;
        let mut attempt = 1;
        loop {
            let last = match tokio::time::timeout_at(deadline, op()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if e.is_retryable() => e,
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "no answer from the database within {:?}",
                        self.retry.budget
                    )))
                }
            };
            let pause = self.retry.backoff.delay(attempt, rand::random::<f64>());
            if Instant::now() + pause >= deadline {
                return Err(last);
            }
            tracing::debug!(error = %last, attempt, ?pause, "database busy; retrying");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }
}

#[async_trait]
impl Store for BusyRetryStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn request_log_insert_many(&self, entries: &[RequestLogEntry]) -> Result<(), StoreError> {
        self.call(|| self.inner.request_log_insert_many(entries))
            .await
    }

    async fn request_log_stats(&self) -> Result<RequestLogStats, StoreError> {
        self.call(|| self.inner.request_log_stats()).await
    }

    async fn task_insert(&self, params: TaskInsertParams) -> Result<Task, StoreError> {
        self.call(|| self.inner.task_insert(params.clone())).await
    }

    async fn task_insert_many(
        &self,
        params: &[TaskInsertParams],
    ) -> Result<Vec<TaskId>, StoreError> {
        self.call(|| self.inner.task_insert_many(params)).await
    }

    async fn task_insert_idempotent(
        &self,
        params: TaskInsertParams,
        key: &str,
        window: Duration,
    ) -> Result<(Task, bool), StoreError> {
        self.call(|| {
            self.inner
                .task_insert_idempotent(params.clone(), key, window)
        })
        .await
    }

    async fn task_retry(&self, id: TaskId, now: DateTime<Utc>) -> Result<TaskChange, StoreError> {
        self.call(|| self.inner.task_retry(id, now)).await
    }

    async fn task_cancel(&self, id: TaskId, now: DateTime<Utc>) -> Result<TaskChange, StoreError> {
        self.call(|| self.inner.task_cancel(id, now)).await
    }

    async fn leader_acquire(&self, params: LeaderAcquireParams) -> Result<bool, StoreError> {
        self.call(|| self.inner.leader_acquire(params.clone()))
            .await
    }

    async fn maintenance_prune(
        &self,
        params: MaintenancePruneParams,
    ) -> Result<MaintenancePruneReport, StoreError> {
        self.call(|| self.inner.maintenance_prune(params.clone()))
            .await
    }

    async fn task_list(&self, params: TaskListParams) -> Result<Vec<Task>, StoreError> {
        self.call(|| self.inner.task_list(params.clone())).await
    }

    async fn task_counts(&self) -> Result<TaskCounts, StoreError> {
        self.call(|| self.inner.task_counts()).await
    }

    async fn task_finished_counts(
        &self,
        since: DateTime<Utc>,
    ) -> Result<FinishedCounts, StoreError> {
        self.call(|| self.inner.task_finished_counts(since)).await
    }

    async fn queue_configure(&self, limits: &QueueLimits) -> Result<(), StoreError> {
        self.call(|| self.inner.queue_configure(limits)).await
    }

    async fn queue_list(&self) -> Result<Vec<QueueLimits>, StoreError> {
        self.call(|| self.inner.queue_list()).await
    }

    async fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        self.call(|| self.inner.queue_depths()).await
    }

    async fn task_queued_by_type(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.call(|| self.inner.task_queued_by_type()).await
    }

    async fn task_get(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        self.call(|| self.inner.task_get(id)).await
    }

    async fn task_claim(&self, params: TaskClaimParams) -> Result<Vec<ClaimedTask>, StoreError> {
        self.call(|| self.inner.task_claim(params.clone())).await
    }

    async fn task_complete_many(
        &self,
        completions: &[TaskCompletion],
    ) -> Result<Vec<CompletionOutcome>, StoreError> {
        self.call(|| self.inner.task_complete_many(completions))
            .await
    }

    async fn task_lease_extend(
        &self,
        params: TaskLeaseExtendParams,
    ) -> Result<Vec<TaskId>, StoreError> {
        self.call(|| self.inner.task_lease_extend(params.clone()))
            .await
    }

    async fn task_rescue_expired(&self, params: TaskRescueParams) -> Result<u64, StoreError> {
        self.call(|| self.inner.task_rescue_expired(params.clone()))
            .await
    }

    async fn task_release(&self, params: TaskReleaseParams) -> Result<u64, StoreError> {
        self.call(|| self.inner.task_release(params.clone())).await
    }

    async fn cache_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<Value>, StoreError> {
        self.call(|| self.inner.cache_get(key, now)).await
    }

    async fn cache_record_access(&self, params: &CacheAccessParams) -> Result<(), StoreError> {
        self.call(|| self.inner.cache_record_access(params)).await
    }

    async fn cache_stats(&self, top: i64) -> Result<CacheStats, StoreError> {
        self.call(|| self.inner.cache_stats(top)).await
    }

    async fn event_insert_many(&self, events: &[NewEvent]) -> Result<u64, StoreError> {
        self.call(|| self.inner.event_insert_many(events)).await
    }

    async fn event_list_latest(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        self.call(|| self.inner.event_list_latest(limit)).await
    }

    async fn event_count(&self) -> Result<i64, StoreError> {
        self.call(|| self.inner.event_count()).await
    }

    async fn worker_heartbeat(&self, params: WorkerHeartbeatParams) -> Result<(), StoreError> {
        self.call(|| self.inner.worker_heartbeat(params.clone()))
            .await
    }

    async fn worker_list(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        self.call(|| self.inner.worker_list()).await
    }

    fn task_inserted(&self) -> watch::Receiver<u64> {
        self.inner.task_inserted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gives_up_within_the_budget() {
        let retry = BusyRetry {
            budget: Duration::from_millis(300),
            backoff: RetryPolicy {
                base: Duration::from_millis(10),
                cap: Duration::from_millis(50),
            },
        };
        let store = BusyRetryStore {
            inner: Arc::new(NeverStore),
            retry,
        };
        let started = Instant::now();
        let calls = std::sync::atomic::AtomicU32::new(0);
        let result: Result<(), StoreError> = store
            .call(|| async {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(StoreError::Unavailable("busy".into()))
            })
            .await;
        assert_eq!(result, Err(StoreError::Unavailable("busy".into())));
        assert!(started.elapsed() <= Duration::from_millis(300));
        assert!(calls.into_inner() > 3);
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_other_errors() {
        let store = BusyRetryStore {
            inner: Arc::new(NeverStore),
            retry: BusyRetry::default(),
        };
        let calls = std::sync::atomic::AtomicU32::new(0);
        let result: Result<(), StoreError> = store
            .call(|| async {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(StoreError::Internal("syntax".into()))
            })
            .await;
        assert_eq!(result, Err(StoreError::Internal("syntax".into())));
        assert_eq!(calls.into_inner(), 1);
    }

    /// A store the tests never call through.
    struct NeverStore;

    #[async_trait]
    impl Store for NeverStore {
        fn backend(&self) -> &'static str {
            "never"
        }
        async fn request_log_insert_many(&self, _: &[RequestLogEntry]) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn request_log_stats(&self) -> Result<RequestLogStats, StoreError> {
            unreachable!()
        }
        async fn task_insert(&self, _: TaskInsertParams) -> Result<Task, StoreError> {
            unreachable!()
        }
        async fn task_insert_many(
            &self,
            _: &[TaskInsertParams],
        ) -> Result<Vec<TaskId>, StoreError> {
            unreachable!()
        }
        async fn task_insert_idempotent(
            &self,
            _: TaskInsertParams,
            _: &str,
            _: Duration,
        ) -> Result<(Task, bool), StoreError> {
            unreachable!()
        }
        async fn task_retry(&self, _: TaskId, _: DateTime<Utc>) -> Result<TaskChange, StoreError> {
            unreachable!()
        }
        async fn task_cancel(&self, _: TaskId, _: DateTime<Utc>) -> Result<TaskChange, StoreError> {
            unreachable!()
        }
        async fn leader_acquire(&self, _: LeaderAcquireParams) -> Result<bool, StoreError> {
            unreachable!()
        }
        async fn maintenance_prune(
            &self,
            _: MaintenancePruneParams,
        ) -> Result<MaintenancePruneReport, StoreError> {
            unreachable!()
        }
        async fn task_list(&self, _: TaskListParams) -> Result<Vec<Task>, StoreError> {
            unreachable!()
        }
        async fn task_counts(&self) -> Result<TaskCounts, StoreError> {
            unreachable!()
        }
        async fn task_finished_counts(
            &self,
            _: DateTime<Utc>,
        ) -> Result<FinishedCounts, StoreError> {
            unreachable!()
        }
        async fn queue_configure(&self, _: &QueueLimits) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn queue_list(&self) -> Result<Vec<QueueLimits>, StoreError> {
            unreachable!()
        }
        async fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
            unreachable!()
        }
        async fn task_queued_by_type(&self) -> Result<Vec<(String, i64)>, StoreError> {
            unreachable!()
        }
        async fn task_get(&self, _: TaskId) -> Result<Option<Task>, StoreError> {
            unreachable!()
        }
        async fn task_claim(&self, _: TaskClaimParams) -> Result<Vec<ClaimedTask>, StoreError> {
            unreachable!()
        }
        async fn task_complete_many(
            &self,
            _: &[TaskCompletion],
        ) -> Result<Vec<CompletionOutcome>, StoreError> {
            unreachable!()
        }
        async fn task_lease_extend(
            &self,
            _: TaskLeaseExtendParams,
        ) -> Result<Vec<TaskId>, StoreError> {
            unreachable!()
        }
        async fn task_rescue_expired(&self, _: TaskRescueParams) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn task_release(&self, _: TaskReleaseParams) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn cache_get(&self, _: &str, _: DateTime<Utc>) -> Result<Option<Value>, StoreError> {
            unreachable!()
        }
        async fn cache_record_access(&self, _: &CacheAccessParams) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn cache_stats(&self, _: i64) -> Result<CacheStats, StoreError> {
            unreachable!()
        }
        async fn event_insert_many(&self, _: &[NewEvent]) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn event_list_latest(&self, _: i64) -> Result<Vec<StoredEvent>, StoreError> {
            unreachable!()
        }
        async fn event_count(&self) -> Result<i64, StoreError> {
            unreachable!()
        }
        async fn worker_heartbeat(&self, _: WorkerHeartbeatParams) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn worker_list(&self) -> Result<Vec<WorkerInfo>, StoreError> {
            unreachable!()
        }
        fn task_inserted(&self) -> watch::Receiver<u64> {
            unreachable!()
        }
    }
}
