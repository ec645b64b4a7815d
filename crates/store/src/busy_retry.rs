//! Riding out a busy or briefly unreachable database.
//!
//! [`BusyRetry`] retries store calls that failed with
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
use std::time::Duration;

use tokio::time::Instant;
use weir_core::{RetryPolicy, StoreError};

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

impl BusyRetry {
    /// Runs `op`, again after a backoff while it fails with a retryable
    /// error, until it succeeds or the budget is spent.
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let deadline = Instant::now() + self.budget;
        let mut attempt = 1;
        loop {
            let last = match tokio::time::timeout_at(deadline, op()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if e.is_busy() => e,
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "no answer from the database within {:?}",
                        self.budget
                    )))
                }
            };
            let pause = self.backoff.delay(attempt, rand::random::<f64>());
            if Instant::now() + pause >= deadline {
                return Err(last);
            }
            tracing::debug!(error = %last, attempt, ?pause, "database busy; retrying");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
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
        let started = Instant::now();
        let calls = std::sync::atomic::AtomicU32::new(0);
        let result: Result<(), StoreError> = retry
            .run(|| async {
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
        // A full disk does not clear within a request: answered at once.
        for error in [
            StoreError::Internal("syntax".into()),
            StoreError::DiskFull("database or disk is full".into()),
        ] {
            let calls = std::sync::atomic::AtomicU32::new(0);
            let result: Result<(), StoreError> = BusyRetry::default()
                .run(|| async {
                    calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Err(error.clone())
                })
                .await;
            assert_eq!(result, Err(error));
            assert_eq!(calls.into_inner(), 1);
        }
    }
}
