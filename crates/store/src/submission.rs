//! What a submission becomes, whoever submits it: the API's `POST /tasks`,
//! the periodic scheduler, or any other submitter.
//!
//! In order: the input is checked against its type and the options against
//! their bounds (`Submission::check_options`); the type's defaults fill
//! what the submission left out; a cacheable input already computed is
//! answered from the cache (when the submitter reads the cache); a submission
//! under an idempotency key returns the task the key names; otherwise the task
//! is queued — through group commit when the submitter has a writer — and a
//! cacheable input already queued or running is folded into that task.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;
use weir_core::{
    tenant_scoped, IdempotencyKey, InputError, Queued, RegisteredType, ResultCache, RetryPolicy,
    Store, StoreError, TaskAdmin, TaskId, TaskInsertParams, TaskQueue, TaskState, TaskType,
    TaskTypes,
};

use crate::{CacheAccessRecorder, TaskInsertWriter};

mod workflow;
pub use workflow::{
    StepSubmission, StepsAdder, SubmittedWorkflow, WorkflowError, WorkflowSubmission,
    MAX_STEP_ID_BYTES,
};

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
    /// The trace context the task's attempts continue (the submitting
    /// request's span; see `TaskInsertParams::trace`). Not part of what
    /// makes two submissions the same request.
    pub trace: Option<String>,
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
            trace: None,
        }
    }
}

/// Most attempts a submission may ask for.
pub const MAX_ATTEMPTS_LIMIT: i32 = 100;
/// Longest concurrency key accepted.
pub const MAX_CONCURRENCY_KEY_BYTES: usize = 255;
/// Longest backoff cap a submission may ask for.
pub const MAX_BACKOFF_CAP: Duration = Duration::from_secs(24 * 3600);

impl Submission {
    /// The bounds every submission's options meet, whoever submits it (the
    /// API, the scheduler, any other entry point); the input itself is its
    /// type's to check.
    pub fn check_options(&self, t: &RegisteredType) -> Result<(), InputError> {
        if let Some(n) = self.max_attempts {
            if !(1..=MAX_ATTEMPTS_LIMIT).contains(&n) {
                return Err(InputError::option(
                    "max_attempts",
                    format!("max_attempts must be from 1 to {MAX_ATTEMPTS_LIMIT}"),
                ));
            }
        }
        if let Some(q) = &self.queue {
            if !weir_core::task_type::valid_queue_name(q) {
                return Err(InputError::option(
                    "queue",
                    format!(
                        "a queue name is 1 to {} of A-Z a-z 0-9 _ . : -",
                        weir_core::task_type::MAX_QUEUE_NAME_BYTES
                    ),
                ));
            }
        }
        if let Some(k) = &self.concurrency_key {
            if k.is_empty() || k.len() > MAX_CONCURRENCY_KEY_BYTES {
                return Err(InputError::option(
                    "concurrency_key",
                    format!("a concurrency key is 1 to {MAX_CONCURRENCY_KEY_BYTES} bytes"),
                ));
            }
        }
        if let Some(b) = self.backoff {
            if b.base.as_millis() < 1 || b.cap < b.base || b.cap > MAX_BACKOFF_CAP {
                return Err(InputError::option(
                    "retry_backoff",
                    "the base must be at least 1ms, the cap at least the base and at most 24h",
                ));
            }
        }
        if let Some(d) = self.timeout {
            if d.is_zero() || d > t.spec.timeout {
                return Err(InputError::option(
                    "timeout",
                    format!(
                        "timeout must be above 0 and at most the type's {}",
                        humantime::format_duration(t.spec.timeout)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// What makes two submissions the same request: every field the client
    /// chose (defaults left out, so a changed default does not change it),
    /// the input with its object keys in order. SHA-256, hex.
    pub fn fingerprint(&self) -> String {
        let fields = serde_json::json!([
            self.kind,
            canonical(&self.input),
            self.max_attempts,
            self.priority,
            self.run_at.map(|t| t.timestamp_micros()),
            self.queue,
            self.concurrency_key,
            self.backoff
                .map(|b| (b.base.as_millis() as u64, b.cap.as_millis() as u64)),
            self.timeout.map(|t| t.as_millis() as u64),
        ]);
        hex::encode(Sha256::digest(fields.to_string().as_bytes()))
    }
}

/// The answer of a one-row submit.
fn first(queued: Vec<Queued>, id: TaskId) -> Queued {
    queued.into_iter().next().unwrap_or(Queued::Task(id))
}

/// `value` as a string whose object keys are sorted, whatever order they
/// came in (serde_json may keep insertion order).
fn canonical(value: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::from(k.as_str()).to_string());
                    out.push(':');
                    write(&map[k], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
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

    /// What a submission becomes as a task to insert, under every rule (its
    /// type, its input, its options' bounds, secrets sealed), and its cache
    /// key's type-level part; nothing is stored.
    fn prepare(&self, s: &Submission, now: DateTime<Utc>) -> Result<TaskInsertParams, SubmitError> {
        let registered = self.types.get(&s.kind)?;
        registered.validate_input(&s.input)?;
        s.check_options(registered)?;
        let spec = &registered.spec;
        let cache_key = registered
            .cache_key(&s.input)
            .map(|k| tenant_scoped(s.tenant.as_deref(), k));
        let mut input = s.input.clone();
        // Secrets are sealed before anything is stored.
        self.types.seal_input(registered, &mut input);
        Ok(TaskInsertParams {
            id: TaskId::new(),
            kind: spec.name.clone(),
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
                .clone()
                .or_else(|| spec.queue.clone())
                .unwrap_or_else(|| "default".into()),
            concurrency_key: s.concurrency_key.clone(),
            backoff: s.backoff,
            timeout: s.timeout,
            tenant: s.tenant.clone(),
            trace: s.trace.clone(),
        })
    }

    pub async fn submit(&self, s: Submission) -> Result<Submitted, SubmitError> {
        let now = Utc::now();
        let params = self.prepare(&s, now)?;
        let (id, kind) = (params.id, params.kind.clone());
        let fingerprint = s.fingerprint();
        if let Some(key) = s.idempotency_key {
            if let (Some(cache_key), Some(recorder)) = (&params.cache_key, &self.cache) {
                if let Some(result) = ResultCache::cache_get(&*self.store, cache_key, now).await? {
                    recorder.hit(cache_key);
                    return Ok(Submitted::Cached { kind, result });
                }
                recorder.miss();
            }
            let key = IdempotencyKey {
                key: tenant_scoped(s.tenant.as_deref(), key),
                fingerprint: Some(fingerprint),
            };
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
        // The cache is read by the insert itself (one round trip): through
        // the writer always, else when this submitter reads the cache.
        let cache_key = params.cache_key.clone();
        let queued = match (&self.writer, &self.cache) {
            (Some(writer), _) => writer.write(params).await?,
            (None, Some(_)) => first(
                TaskQueue::task_submit_many(&*self.store, std::slice::from_ref(&params)).await?,
                id,
            ),
            (None, None) => Queued::Task(
                TaskQueue::task_insert_many(&*self.store, std::slice::from_ref(&params))
                    .await?
                    .first()
                    .copied()
                    .unwrap_or(id),
            ),
        };
        if let (Some(key), Some(recorder)) = (&cache_key, &self.cache) {
            match &queued {
                Queued::Cached(_) => recorder.hit(key),
                Queued::Task(_) => recorder.miss(),
            }
        }
        let task_id = match queued {
            Queued::Cached(result) => return Ok(Submitted::Cached { kind, result }),
            Queued::Task(task_id) => task_id,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_out_of_bounds_are_refused_naming_the_option() {
        let types = TaskTypes::default();
        let md5 = types.get("md5").unwrap();
        let base = Submission::new("md5", serde_json::json!({"string": "a"}));
        assert_eq!(base.check_options(md5), Ok(()));
        let refused = |change: fn(&mut Submission)| {
            let mut s = base.clone();
            change(&mut s);
            match s.check_options(md5) {
                Err(InputError::Option { option, .. }) => option,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(refused(|s| s.max_attempts = Some(0)), "max_attempts");
        assert_eq!(refused(|s| s.max_attempts = Some(101)), "max_attempts");
        assert_eq!(refused(|s| s.queue = Some("no spaces".into())), "queue");
        assert_eq!(
            refused(|s| s.concurrency_key = Some(String::new())),
            "concurrency_key"
        );
        assert_eq!(
            refused(|s| s.concurrency_key = Some("k".repeat(256))),
            "concurrency_key"
        );
        assert_eq!(
            refused(|s| {
                s.backoff = Some(RetryPolicy {
                    base: Duration::from_secs(2),
                    cap: Duration::from_secs(1),
                })
            }),
            "retry_backoff"
        );
        assert_eq!(
            refused(|s| {
                s.backoff = Some(RetryPolicy {
                    base: Duration::from_secs(1),
                    cap: Duration::from_secs(25 * 3600),
                })
            }),
            "retry_backoff"
        );
        assert_eq!(refused(|s| s.timeout = Some(Duration::ZERO)), "timeout");
        assert_eq!(
            refused(|s| s.timeout = Some(Duration::from_secs(24 * 3600))),
            "timeout"
        );
        let mut fine = base.clone();
        fine.max_attempts = Some(100);
        fine.queue = Some("emails".into());
        fine.timeout = Some(Duration::from_secs(1));
        assert_eq!(fine.check_options(md5), Ok(()));
    }

    #[test]
    fn the_fingerprint_ignores_key_order_and_sees_every_chosen_field() {
        let a = Submission::new(
            "md5",
            serde_json::json!({"string": "a", "n": {"x": 1, "y": 2}}),
        );
        let mut b = a.clone();
        b.input = serde_json::from_str(r#"{"n": {"y": 2, "x": 1}, "string": "a"}"#).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.input = serde_json::json!({"string": "b", "n": {"x": 1, "y": 2}});
        assert_ne!(a.fingerprint(), b.fingerprint());
        let mut c = a.clone();
        c.priority = Some(5);
        assert_ne!(a.fingerprint(), c.fingerprint());
        let mut d = a.clone();
        d.kind = "sha256".into();
        assert_ne!(a.fingerprint(), d.fingerprint());
        // The key itself is not part of the request it names.
        let mut e = a.clone();
        e.idempotency_key = Some("k-1".into());
        assert_eq!(a.fingerprint(), e.fingerprint());
    }
}
