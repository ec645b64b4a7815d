//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use weir_core::{Store, TaskTypes};
use weir_ingest::{BufferConfig, EventBuffer};
use weir_store::{CacheAccessRecorder, EventWriter, RequestLogWriter, Submitter, TaskInsertWriter};

/// An API node's settings.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// This node's id, sent as `X-Weir-Node` and stored with each logged request.
    pub node_id: String,
    /// Simulated processing time of `GET /`.
    pub delay: Duration,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Attempts a task gets unless the submission says otherwise.
    pub default_max_attempts: i32,
    /// A worker silent for longer than this is shown as offline.
    pub worker_offline_after: Duration,
    /// How long a request retries a busy or unreachable database before it
    /// answers 503 database_busy.
    pub db_busy_timeout: Duration,
    /// How long an idempotency key keeps returning the same task.
    pub idempotency_window: Duration,
    /// Largest `POST /write` body; larger ones get 413.
    pub max_write_bytes: usize,
    /// Most events in one `POST /write`.
    pub max_write_events: usize,
    /// Most steps in one workflow.
    pub max_workflow_steps: usize,
    /// Buffered ingest through Redis; `None`: events are stored directly.
    pub ingest_buffer: Option<BufferConfig>,
    /// The task types submissions may name, with their defaults and schemas.
    pub task_types: Arc<TaskTypes>,
    /// Bearer token external workers present to claim and report; `None`:
    /// the external-worker endpoints refuse every call.
    pub worker_token: Option<String>,
    /// The lease an external worker's claim holds unless it asks for another.
    pub external_lease: Duration,
    /// Backoff after an external worker's failed attempt, unless the task
    /// or its type says otherwise.
    pub retry_backoff: weir_core::RetryPolicy,
    /// How long cached results (of types that cache) stay.
    pub cache_ttl: Duration,
    /// Client keys (`--api-keys`); `None`: every endpoint is open.
    pub api_keys: Option<Arc<crate::api_keys::ApiKeys>>,
    /// JWT bearer tokens beside the keys (`--jwt-jwks`); with either set,
    /// every endpoint but health, metrics and OpenAPI needs one of them.
    pub jwt: Option<Arc<crate::jwt::JwtVerifier>>,
    /// Origins whose pages may call this API from a browser (`--cors-origin`;
    /// `*`: any). Empty: no CORS headers, so browsers refuse cross-origin calls.
    pub cors_origins: Vec<String>,
    /// The draining flag `/health/ready` reads; the node's shutdown sets it.
    pub readiness: weir_store::Readiness,
}

/// Request body limits of the routes that take more than `max_body_bytes`.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    /// `POST /write`.
    pub write: usize,
    /// `POST /workflows` and `POST /workflows/{id}/steps`.
    pub workflows: usize,
}

impl BodyLimits {
    /// For describing the routes, not serving them.
    pub const UNLIMITED: BodyLimits = BodyLimits {
        write: usize::MAX,
        workflows: usize::MAX,
    };
}

/// Room for one step of a workflow's body: a workflow of
/// `--max-workflow-steps` steps is refused for its steps (413
/// `too_many_steps`), not first for its bytes.
const WORKFLOW_BYTES_PER_STEP: usize = 1024;

impl ApiConfig {
    /// The limit of a JSON body sent to `path`: the one `app` gives its
    /// route.
    pub fn json_body_limit(&self, path: &str) -> usize {
        let steps = path.starts_with("/workflows/") && path.ends_with("/steps");
        if path == "/workflows" || steps {
            self.body_limits().workflows
        } else {
            self.max_body_bytes
        }
    }

    pub fn body_limits(&self) -> BodyLimits {
        BodyLimits {
            write: self.max_write_bytes,
            workflows: self.max_body_bytes.max(
                self.max_workflow_steps
                    .saturating_mul(WORKFLOW_BYTES_PER_STEP),
            ),
        }
    }

    pub fn new(node_id: impl Into<String>) -> Self {
        ApiConfig {
            node_id: node_id.into(),
            delay: Duration::ZERO,
            max_body_bytes: 1024 * 1024,
            default_max_attempts: weir_core::DEFAULT_MAX_ATTEMPTS,
            worker_offline_after: Duration::from_secs(10),
            db_busy_timeout: Duration::from_secs(3),
            idempotency_window: Duration::from_secs(24 * 3600),
            max_write_bytes: 16 * 1024 * 1024,
            max_write_events: 100_000,
            max_workflow_steps: weir_core::DEFAULT_MAX_WORKFLOW_STEPS,
            ingest_buffer: None,
            task_types: Arc::new(TaskTypes::default()),
            worker_token: None,
            external_lease: Duration::from_secs(30),
            retry_backoff: weir_core::RetryPolicy::default(),
            cache_ttl: Duration::from_secs(3600),
            api_keys: None,
            jwt: None,
            cors_origins: Vec::new(),
            readiness: weir_store::Readiness::default(),
        }
    }
}

/// Where `POST /write` puts events: the durability mode.
#[derive(Clone)]
pub enum EventSink {
    /// Stored through group commit; 202 after the commit.
    Direct(EventWriter),
    /// Appended to a Redis Stream; 202 once Redis has it. Workers store them.
    Buffered(EventBuffer),
}

/// Shared by all handlers of one node. Cheap to clone: one reference count
/// (axum clones the state for every request and every layer).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] points to.
pub struct Shared {
    pub config: Arc<ApiConfig>,
    pub store: Arc<dyn Store>,
    pub request_log: RequestLogWriter,
    /// What a submission becomes: answered from the cache (hits and misses
    /// recorded in batches) or queued through group commit.
    pub submitter: Submitter,
    pub events: EventSink,
    /// `weir_events_accepted_total` for this node's ingest mode, looked up
    /// once rather than per request.
    pub events_accepted: metrics::Counter,
    /// Wakes this node's bulk-action runner when a bulk action starts here.
    pub bulk_started: Arc<tokio::sync::Notify>,
}

impl AppState {
    pub fn new(
        config: ApiConfig,
        store: Arc<dyn Store>,
        request_log: RequestLogWriter,
        task_inserts: TaskInsertWriter,
        cache_access: CacheAccessRecorder,
        events: EventSink,
    ) -> Self {
        let submitter = Submitter::new(
            store.clone(),
            config.task_types.clone(),
            config.default_max_attempts,
            config.idempotency_window,
        )
        .reading_cache(cache_access)
        .through(task_inserts);
        // Installed first, so the counter is bound to the exporter.
        weir_telemetry::install();
        let mode = match &events {
            EventSink::Direct(_) => "direct",
            EventSink::Buffered(_) => "buffered",
        };
        let events_accepted = metrics::counter!("weir_events_accepted_total", "mode" => mode);
        // Exported at 0 from the start, so a rate sees the first busy answer.
        metrics::counter!(crate::error::DATABASE_BUSY_METRIC).increment(0);
        AppState(Arc::new(Shared {
            config: Arc::new(config),
            store,
            request_log,
            submitter,
            events,
            events_accepted,
            bulk_started: Arc::new(tokio::sync::Notify::new()),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
