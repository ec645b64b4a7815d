//! Whether a process should be sent traffic or work: what `/health/ready`
//! answers on every role. Not ready while draining (from the shutdown
//! signal on) or while its store does not answer a round trip in time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use weir_core::Store;

/// Longest a readiness probe waits for the store: well under the probe
/// timeouts orchestrators use (Kubernetes: 1 s by default, often raised).
pub const PING_TIMEOUT: Duration = Duration::from_millis(800);

/// A process's draining flag, shared by its probes and its shutdown.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

/// Why a process is not ready.
#[derive(Debug, Error)]
pub enum NotReady {
    #[error("draining: this process is shutting down")]
    Draining,
    #[error("the store does not answer: {0}")]
    StoreUnreachable(String),
}

impl NotReady {
    /// The JSON error code.
    pub fn code(&self) -> &'static str {
        match self {
            NotReady::Draining => "draining",
            NotReady::StoreUnreachable(_) => "store_unreachable",
        }
    }
}

impl Readiness {
    /// From now on, not ready.
    pub fn drain(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Ready: not draining, and `store` answers within [`PING_TIMEOUT`].
    pub async fn check(&self, store: &dyn Store) -> Result<(), NotReady> {
        if self.is_draining() {
            return Err(NotReady::Draining);
        }
        match tokio::time::timeout(PING_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(NotReady::StoreUnreachable(e.to_string())),
            Err(_) => Err(NotReady::StoreUnreachable(format!(
                "no answer within {PING_TIMEOUT:?}"
            ))),
        }
    }
}
