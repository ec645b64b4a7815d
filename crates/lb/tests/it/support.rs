//! Tiny axum backends and an lb in front of them.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use weir_lb::{Lb, LbConfig, Strategy};

pub const TOKEN: &str = "lb-test-token";

/// A backend that names itself, echoes what it got, and can be slow.
pub struct TestBackend {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TestBackend {
    pub async fn start(name: &str, delay: Duration) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route("/echo", get(echo).post(echo_body))
            .route("/work", get(work))
            .route("/.well-known/acme-challenge/{token}", get(echo))
            .with_state((name.to_string(), delay))
            // The echo backend must take what the streaming test sends.
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024));
        let task = tokio::spawn(serve_killable(listener, app));
        TestBackend { addr, task }
    }

    /// A backend whose `/work` always answers 500 (its health check passes).
    pub async fn failing(name: &str) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name = name.to_string();
        let app = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route(
                "/work",
                get(move || {
                    let name = name.clone();
                    async move { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, name) }
                }),
            );
        let task = tokio::spawn(serve_killable(listener, app));
        TestBackend { addr, task }
    }

    /// A backend whose `/work` always answers 429 at once, with Retry-After
    /// (a backend shedding load; its health check passes).
    pub async fn refusing(name: &str) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name = name.to_string();
        let app = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route(
                "/work",
                get(move || {
                    let name = name.clone();
                    async move {
                        (
                            axum::http::StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after", "1")],
                            name,
                        )
                    }
                }),
            );
        let task = tokio::spawn(serve_killable(listener, app));
        TestBackend { addr, task }
    }

    /// A backend that works on `capacity` requests to `/work` at once, each
    /// for `delay`, while the rest wait their turn (a fixed worker pool).
    pub async fn bounded(capacity: usize, delay: Duration) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let workers = std::sync::Arc::new(tokio::sync::Semaphore::new(capacity));
        let app = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route(
                "/work",
                get(move || {
                    let workers = workers.clone();
                    async move {
                        let _worker = workers.acquire_owned().await;
                        tokio::time::sleep(delay).await;
                        "done"
                    }
                }),
            );
        let task = tokio::spawn(serve_killable(listener, app));
        TestBackend { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the backend: its port refuses connections from now on.
    /// Stops at once, dropping every open connection (as SIGKILL would).
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn echo(
    State((name, _)): State<(String, Duration)>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> ([(&'static str, String); 2], Json<Value>) {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    (
        [("x-backend", name.clone()), ("x-custom", "kept".into())],
        Json(json!({ "backend": name, "headers": headers, "query": q })),
    )
}

async fn echo_body(body: axum::body::Bytes) -> axum::body::Bytes {
    body
}

async fn work(State((name, delay)): State<(String, Duration)>) -> String {
    tokio::time::sleep(delay).await;
    name
}

/// An lb in front of `backends`.
pub struct TestLb {
    pub base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestLb {
    pub async fn start(backends: Vec<String>, strategy: Strategy) -> TestLb {
        Self::start_with(backends, |c| c.strategy = strategy).await
    }

    /// An lb whose test defaults `adjust` changes.
    pub async fn start_with(backends: Vec<String>, adjust: impl FnOnce(&mut LbConfig)) -> TestLb {
        let mut config = LbConfig::new(backends);
        config.admin_token = TOKEN.into();
        config.health_interval = Duration::from_millis(100);
        config.health_timeout = Duration::from_millis(500);
        adjust(&mut config);
        let lb = Lb::new(config).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(weir_lb::run(listener, lb, async move {
            let _ = rx.await;
        }));
        TestLb {
            base,
            stop: tx,
            task,
        }
    }

    /// `GET /lb/stats`.
    pub async fn stats(&self) -> Value {
        stats_at(&self.base).await
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }

    /// Asks the lb to drain and returns its task, which ends when it has.
    pub fn begin_stop(self) -> JoinHandle<std::io::Result<()>> {
        let _ = self.stop.send(());
        self.task
    }
}

/// `GET /lb/stats` of the lb at `base`.
pub async fn stats_at(base: &str) -> Value {
    reqwest::get(format!("{base}/lb/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub use weir_testkit::poll;

/// Serves `app`, owning every connection, so aborting the task drops them all
/// (unlike `axum::serve`, whose connection tasks outlive it).
async fn serve_killable(listener: TcpListener, app: Router) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
        while connections.try_join_next().is_some() {}
    }
}
