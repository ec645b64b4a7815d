//! Starting a stack for one test, and polling helpers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use weir::cluster::{Cluster, ClusterSpec};
use weir_core::Store;
use weir_store::StoreOptions;

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// What to start; defaults mirror `weir up` with faster worker timings.
pub struct StackOptions {
    pub api_nodes: usize,
    pub workers: usize,
    pub worker_concurrency: usize,
    pub delay: Duration,
    pub max_body_bytes: usize,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            api_nodes: 3,
            workers: 3,
            worker_concurrency: 4,
            delay: Duration::ZERO,
            max_body_bytes: 1024 * 1024,
        }
    }
}

pub struct Stack {
    pub base: String,
    pub http: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub db_path: std::path::PathBuf,
    cluster: Option<Cluster>,
    _dir: TempDir,
}

impl Stack {
    pub async fn start(opts: StackOptions) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("weir.db");
        let store = weir_store::open(&StoreOptions::new(format!(
            "sqlite://{}",
            db_path.display()
        )))
        .await
        .unwrap();
        let mut api = weir_api::ApiConfig::new("");
        api.delay = opts.delay;
        api.max_body_bytes = opts.max_body_bytes;
        let mut worker = weir_worker::WorkerConfig::new("");
        worker.concurrency = opts.worker_concurrency;
        worker.poll_interval = Duration::from_millis(100);
        worker.heartbeat_interval = Duration::from_millis(200);
        worker.shutdown_grace = Duration::from_secs(5);
        let mut lb = weir_lb::LbConfig::new(Vec::new());
        lb.admin_token = ADMIN_TOKEN.into();
        let spec = ClusterSpec {
            listen: "127.0.0.1:0".parse().unwrap(),
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
            store,
            db_path,
            cluster: Some(cluster),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(self.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
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

    /// Shuts the cluster down; returns the temp dir so the caller can still
    /// read the store afterwards.
    pub async fn stop(mut self) -> TempDir {
        if let Some(cluster) = self.cluster.take() {
            cluster.shutdown().await.unwrap();
        }
        self._dir
    }
}

/// Calls `check` until it returns `Some`, or panics after `deadline`.
pub async fn poll<T, F, Fut>(deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
