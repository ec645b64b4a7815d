//! What a submission becomes, whoever submits it: the API's `POST /tasks`,
//! the periodic scheduler, or any other submitter.
//!
//! In order: the input is checked against its type; the type's defaults fill
//! what the submission left out; a cacheable input already computed is
//! answered from the cache (when the submitter reads the cache); a submission
//! under an idempotency key returns the task the key names; otherwise the task
//! is queued — through group commit when the submitter has a writer — and a
//! cacheable input already queued or running is folded into that task.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use thiserror::Error;
use weir_core::{
    InputError, ResultCache, RetryPolicy, Store, StoreError, TaskAdmin, TaskId, TaskInsertParams,
    TaskQueue, TaskState, TaskType, TaskTypes,
};

use crate::{CacheAccessRecorder, TaskInsertWriter};

/// One task to queue; `None`s take the type's defaults, then the submitter's.
#[derive(Clone, Debug)]
pub struct Submission {
    pub kind: String,
    pub input: Value,
    pub max_attempts: Option<i32>,
    pub priority: Option<i32>,
    pub run_at: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    pub queue: Option<String>,
    pub concurrency_key: Option<String>,
    pub backoff: Option<RetryPolicy>,
    pub timeout: Option<Duration>,
    /// The submitting key's tenant: the task is stamped with it, and its
    /// cache and idempotency keys are the tenant's own.
    pub tenant: Option<String>,
}

impl Submission {
    /// A submission of `input` to type `kind`, with every option left to defaults.
    pub fn new(kind: impl Into<String>, input: Value) -> Self {
        Submission {
            kind: kind.into(),
            input,
            max_attempts: None,
            priority: None,
            run_at: None,
            idempotency_key: None,
            queue: None,
            concurrency_key: None,
            backoff: None,
            timeout: None,
            tenant: None,
        }
    }
}

/// A key in a tenant's own namespace (`None`: the shared one).
fn scoped(tenant: Option<&str>, key: String) -> String {
    match tenant {
        Some(t) => format!("{t}/{key}"),
        None => key,
    }
}

/// What came of a submission.
#[derive(Clone, Debug, PartialEq)]
pub enum Submitted {
    /// The type's result for this input was cached: no task.
    Cached { kind: TaskType, result: Value },
    /// A new task, durably queued.
    Queued { task_id: TaskId, kind: TaskType },
    /// An earlier task stands for this one: the one its idempotency key
    /// names (`replayed`), or an equal cacheable input queued or running.
    Existing {
        task_id: TaskId,
        kind: TaskType,
        state: TaskState,
        replayed: bool,
    },
}

/// Why a submission was refused.
#[derive(Debug, Error)]
pub enum SubmitError {
    /// The client's fault: unknown type or input its type refuses.
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Turns submissions into tasks under one set of rules.
#[derive(Clone)]
pub struct Submitter {
    store: Arc<dyn Store>,
    types: Arc<TaskTypes>,
    default_max_attempts: i32,
    idempotency_window: Duration,
    /// Read the cache first, and count hits and misses.
    cache: Option<CacheAccessRecorder>,
    /// Queue through group commit (else one insert per submission).
    writer: Option<TaskInsertWriter>,
}

impl Submitter {
    pub fn new(
        store: Arc<dyn Store>,
        types: Arc<TaskTypes>,
        default_max_attempts: i32,
        idempotency_window: Duration,
    ) -> Self {
        Submitter {
            store,
            types,
            default_max_attempts,
            idempotency_window,
            cache: None,
            writer: None,
        }
    }

    /// Answers cacheable inputs from the cache, counting reads with `recorder`.
    pub fn reading_cache(mut self, recorder: CacheAccessRecorder) -> Self {
        self.cache = Some(recorder);
        self
    }

    /// Queues through a group-commit writer.
    pub fn through(mut self, writer: TaskInsertWriter) -> Self {
        self.writer = Some(writer);
        self
    }

    /// The registry submissions are checked against.
    pub fn types(&self) -> &TaskTypes {
        &self.types
    }

    pub async fn submit(&self, s: Submission) -> Result<Submitted, SubmitError> {
        let registered = self.types.get(&s.kind)?;
        registered.validate_input(&s.input)?;
        let spec = &registered.spec;
        let kind = spec.name.clone();
        let now = Utc::now();
        let cache_key = registered
            .cache_key(&s.input)
            .map(|k| scoped(s.tenant.as_deref(), k));
        let mut input = s.input;
        // Secrets are sealed before anything is stored.
        self.types.seal_input(registered, &mut input);
        if let (Some(key), Some(recorder)) = (&cache_key, &self.cache) {
            if let Some(result) = ResultCache::cache_get(&*self.store, key, now).await? {
                recorder.hit(key);
                return Ok(Submitted::Cached { kind, result });
            }
            recorder.miss();
        }
        let id = TaskId::new();
        let params = TaskInsertParams {
            id,
            kind: kind.clone(),
            input,
            max_attempts: s
                .max_attempts
                .or(spec.max_attempts)
                .unwrap_or(self.default_max_attempts),
            priority: s.priority.or(spec.priority).unwrap_or(0),
            cache_key,
            run_at: s.run_at.unwrap_or(now),
            now,
            queue: s
                .queue
                .or_else(|| spec.queue.clone())
                .unwrap_or_else(|| "default".into()),
            concurrency_key: s.concurrency_key,
            backoff: s.backoff,
            timeout: s.timeout,
            tenant: s.tenant.clone(),
        };
        if let Some(key) = s.idempotency_key {
            let key = scoped(s.tenant.as_deref(), key);
            let (task, created) = TaskQueue::task_insert_idempotent(
                &*self.store,
                params,
                &key,
                self.idempotency_window,
            )
            .await?;
            return Ok(if created {
                Submitted::Queued {
                    task_id: task.id,
                    kind: task.kind,
                }
            } else {
                Submitted::Existing {
                    task_id: task.id,
                    kind: task.kind,
                    state: task.state,
                    replayed: true,
                }
            });
        }
        // Acknowledged only once committed: what weir accepted is durable.
        let task_id = match &self.writer {
            Some(writer) => writer.write(params).await?,
            None => {
                let ids = TaskQueue::task_insert_many(&*self.store, std::slice::from_ref(&params))
                    .await?;
                ids.first().copied().unwrap_or(id)
            }
        };
        if task_id == id {
            return Ok(Submitted::Queued { task_id, kind });
        }
        // The same input is already queued or running: that task answers.
        let state = match TaskAdmin::task_get(&*self.store, task_id).await? {
            Some(t) => t.state,
            None => TaskState::Queued,
        };
        Ok(Submitted::Existing {
            task_id,
            kind,
            state,
            replayed: false,
        })
    }
}
