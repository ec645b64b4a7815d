//! Starting a stack for one test, and polling helpers.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use weir::cluster::{Cluster, ClusterSpec};
use weir_core::Store;
use weir_store_sql::StoreOptions;
use weir_testkit::PgDatabase;

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Which store a stack runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// A fresh SQLite file in a temp dir.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

/// Declares each named test, `async fn name(store: StoreKind)`, once per store:
/// `module::sqlite::name` and `module::postgres::name`.
#[macro_export]
macro_rules! for_each_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::StoreKind::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::StoreKind::Postgres).await
                }
            )*
        }
    };
}

/// A request-log row as the test reads it straight from the database.
#[derive(Debug)]
pub struct RequestRow {
    pub node_id: String,
    pub status: i64,
    pub message: Option<String>,
    pub created_at_ms: i64,
}

/// What to start; defaults mirror `weir up` with faster worker timings.
pub struct StackOptions {
    pub store: StoreKind,
    pub api_nodes: usize,
    pub workers: usize,
    pub worker_concurrency: usize,
    pub delay: Duration,
    pub max_body_bytes: usize,
    /// PostgreSQL only: connect as a role limited to this many connections.
    pub pg_connection_limit: Option<i32>,
    /// Pooled connections (shared by every part of the in-process stack).
    pub db_max_connections: u32,
    /// How long API requests ride out a busy database before 503.
    pub db_busy_timeout: Duration,
    /// Finished tasks are deleted this long after finishing (worker default when None).
    pub retention: Option<Duration>,
    /// How often the maintenance leader cleans (worker default when None).
    pub maintenance_interval: Option<Duration>,
    /// Periodic jobs, `NAME|CRON|TYPE|INPUT`.
    pub periodic: Vec<&'static str>,
    /// Buffered ingest through this Redis stream (direct when None).
    pub ingest_buffer: Option<weir_ingest::BufferConfig>,
    /// Largest `POST /write` body.
    pub max_write_bytes: usize,
    /// Most events per `POST /write`.
    pub max_write_events: usize,
    /// Most steps in one workflow.
    pub max_workflow_steps: usize,
    /// Queue limits the workers set.
    pub queue_limits: Vec<weir_core::QueueLimits>,
    /// Most running tasks per concurrency key.
    pub concurrency_key_limit: i32,
    /// The workers' default backoff (the worker default when None).
    pub retry: Option<weir_core::RetryPolicy>,
    /// The task types API nodes and workers know (the built-ins when None).
    pub task_types: Option<weir_core::TaskTypes>,
    /// The external workers' token (their endpoints refuse all when None).
    pub worker_token: Option<String>,
    /// Workers' lease and rescue interval (worker defaults when None).
    pub lease: Option<Duration>,
    pub rescue_interval: Option<Duration>,
    /// Client keys API nodes require (open when None).
    pub api_keys: Option<Arc<weir_api::api_keys::ApiKeys>>,
    /// `--cors-origin` of every API node (closed when empty).
    pub cors_origins: Vec<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            store: StoreKind::Sqlite,
            api_nodes: 3,
            workers: 3,
            worker_concurrency: 4,
            delay: Duration::ZERO,
            max_body_bytes: 1024 * 1024,
            pg_connection_limit: None,
            db_max_connections: 8,
            db_busy_timeout: Duration::from_secs(3),
            retention: None,
            maintenance_interval: None,
            periodic: Vec::new(),
            ingest_buffer: None,
            max_write_bytes: 16 * 1024 * 1024,
            max_write_events: 100_000,
            max_workflow_steps: 10_000,
            queue_limits: Vec::new(),
            concurrency_key_limit: 1,
            retry: None,
            task_types: None,
            worker_token: None,
            lease: None,
            rescue_interval: None,
            api_keys: None,
            cors_origins: Vec::new(),
        }
    }
}

/// A fresh database for separate `weir` processes to share (a SQLite file or
/// a PostgreSQL database); dropped with the guard.
pub struct SharedDb {
    pub url: String,
    _dir: TempDir,
    _pg: Option<PgDatabase>,
}

impl SharedDb {
    pub async fn create(store: StoreKind) -> SharedDb {
        let dir = tempfile::tempdir().unwrap();
        let pg = match store {
            StoreKind::Postgres => Some(PgDatabase::create().await),
            StoreKind::Sqlite => None,
        };
        let url = match &pg {
            Some(db) => db.url().to_string(),
            None => format!("sqlite://{}", dir.path().join("weir.db").display()),
        };
        SharedDb {
            url,
            _dir: dir,
            _pg: pg,
        }
    }
}

/// Keeps a stopped stack's database alive.
pub struct StoreGuard {
    _dir: TempDir,
    _pg: Option<PgDatabase>,
}

impl StackOptions {
    /// Options for a stack on `store`, otherwise default.
    pub fn on(store: StoreKind) -> StackOptions {
        StackOptions {
            store,
            ..StackOptions::default()
        }
    }
}

pub struct Stack {
    pub base: String,
    pub http: reqwest::Client,
    pub store: Arc<dyn Store>,
    /// The store's URL, for reading it directly.
    pub database_url: String,
    cluster: Option<Cluster>,
    _dir: TempDir,
    _pg: Option<PgDatabase>,
}

impl Stack {
    pub async fn start(opts: StackOptions) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let (database_url, pg) = match opts.store {
            StoreKind::Sqlite => (
                format!("sqlite://{}", dir.path().join("weir.db").display()),
                None,
            ),
            StoreKind::Postgres => {
                let mut db = PgDatabase::create().await;
                let url = match opts.pg_connection_limit {
                    Some(limit) => db.owner_role_url(limit).await,
                    None => db.url().to_string(),
                };
                (url, Some(db))
            }
        };
        let mut store_options = StoreOptions::new(database_url.clone());
        store_options.max_connections = opts.db_max_connections;
        store_options.acquire_timeout = opts.db_busy_timeout;
        let store = weir_store_sql::open(&store_options).await.unwrap();
        let mut api = weir_api::ApiConfig::new("");
        api.delay = opts.delay;
        api.max_body_bytes = opts.max_body_bytes;
        api.db_busy_timeout = opts.db_busy_timeout;
        api.ingest_buffer = opts.ingest_buffer.clone();
        api.max_write_bytes = opts.max_write_bytes;
        api.max_write_events = opts.max_write_events;
        api.max_workflow_steps = opts.max_workflow_steps;
        let mut worker = weir_worker::WorkerConfig::new("");
        worker.max_workflow_steps = opts.max_workflow_steps;
        worker.concurrency = opts.worker_concurrency;
        worker.poll_interval = Duration::from_millis(100);
        worker.heartbeat_interval = Duration::from_millis(200);
        worker.shutdown_grace = Duration::from_secs(5);
        if let Some(r) = opts.retention {
            worker.retention = r;
        }
        if let Some(i) = opts.maintenance_interval {
            worker.maintenance_interval = i;
        }
        worker.periodic = opts.periodic.iter().map(|j| j.parse().unwrap()).collect();
        worker.scheduler_interval = Duration::from_millis(200);
        worker.queue_limits = opts.queue_limits.clone();
        worker.concurrency_key_limit = opts.concurrency_key_limit;
        if let Some(retry) = opts.retry {
            worker.retry = retry;
        }
        if let Some(types) = opts.task_types.clone() {
            api.task_types = Arc::new(types.clone());
            worker = worker.with_task_types(types).unwrap();
        }
        api.worker_token = opts.worker_token.clone();
        api.api_keys = opts.api_keys.clone();
        api.cors_origins = opts.cors_origins.clone();
        if let Some(lease) = opts.lease {
            worker.lease = lease;
        }
        if let Some(every) = opts.rescue_interval {
            worker.rescue_interval = every;
        }
        let mut lb = weir_lb::LbConfig::new(Vec::new());
        lb.admin_token = ADMIN_TOKEN.into();
        let spec = ClusterSpec {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_listen: None,
            api_nodes: opts.api_nodes,
            workers: opts.workers,
            api,
            worker,
            lb,
        };
        let cluster = Cluster::start(spec, store.clone()).await.unwrap();
        Stack {
            base: format!("http://{}", cluster.lb_addr),
            http: reqwest::Client::new(),
            store: Arc::new(store),
            database_url,
            cluster: Some(cluster),
            _dir: dir,
            _pg: pg,
        }
    }

    /// The PostgreSQL test database, on a PostgreSQL stack.
    pub fn pg(&self) -> &PgDatabase {
        self._pg.as_ref().expect("a PostgreSQL stack")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(self.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// `DELETE path` (cancel a task); the status.
    pub async fn delete(&self, path: &str) -> u16 {
        let resp = self.http.delete(self.url(path)).send().await.unwrap();
        resp.status().as_u16()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// `POST path` with `body` as an external worker (`Authorization:
    /// Bearer token`): its status, whether it was an idempotent replay, and
    /// its JSON.
    pub async fn post_as_worker(
        &self,
        token: &str,
        path: &str,
        body: &Value,
    ) -> (u16, bool, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let replayed = resp.headers().contains_key("idempotent-replayed");
        (status, replayed, resp.json().await.unwrap())
    }

    /// The request-log rows for `path`, read straight from the database.
    pub async fn request_rows(&self, path: &str) -> Vec<RequestRow> {
        use sqlx::Row;
        const SQL: &str =
            "SELECT node_id, status, message, created_at FROM requests WHERE path = $1 ORDER BY id";
        if self.database_url.starts_with("sqlite:") {
            let db = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
            let rows = sqlx::query(SQL).bind(path).fetch_all(&db).await.unwrap();
            db.close().await;
            rows.iter()
                .map(|r| RequestRow {
                    node_id: r.get("node_id"),
                    status: r.get("status"),
                    message: r.get("message"),
                    created_at_ms: r.get("created_at"),
                })
                .collect()
        } else {
            let db = sqlx::PgPool::connect(&self.database_url).await.unwrap();
            let rows = sqlx::query(SQL).bind(path).fetch_all(&db).await.unwrap();
            db.close().await;
            rows.iter()
                .map(|r| RequestRow {
                    node_id: r.get("node_id"),
                    status: i64::from(r.get::<i32, _>("status")),
                    message: r.get("message"),
                    created_at_ms: r
                        .get::<chrono::DateTime<chrono::Utc>, _>("created_at")
                        .timestamp_millis(),
                })
                .collect()
        }
    }

    /// Polls `GET /tasks/{id}` until the task is final.
    pub async fn wait_task(&self, id: &str) -> Value {
        let path = format!("/tasks/{id}");
        poll(Duration::from_secs(30), || async {
            let (status, task) = self.get_json(&path).await;
            assert_eq!(status, 200, "{task}");
            matches!(task["status"].as_str(), Some("succeeded" | "dead")).then_some(task)
        })
        .await
    }

    /// Shuts the cluster down; the returned guard keeps the store's database
    /// (file or PostgreSQL database) until dropped, so the caller can still read it.
    pub async fn stop(mut self) -> StoreGuard {
        if let Some(cluster) = self.cluster.take() {
            cluster.shutdown().await.unwrap();
        }
        StoreGuard {
            _dir: self._dir,
            _pg: self._pg,
        }
    }
}

pub use weir_testkit::poll;
