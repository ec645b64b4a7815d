//! lb + API nodes + workers in one process, over one store: what `weir up`
//! runs, and what the end-to-end tests start.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weir_api::EventSink;
use weir_api::{ApiConfig, AppState};
use weir_core::Store;
use weir_ingest::EventBuffer;
use weir_lb::{Lb, LbConfig};
use weir_store::{
    BusyRetry, CacheAccessRecorder, EventWriter, RequestLogWriter, SqlStore, TaskInsertWriter,
};
use weir_worker::{WorkerConfig, WorkerReport};

/// Most request-log rows one transaction writes.
const REQUEST_LOG_MAX_BATCH: usize = 1024;
/// How often an API node records the cache reads it gathered.
const CACHE_STATS_FLUSH: Duration = Duration::from_millis(500);
/// Most task submissions one transaction writes.
const TASK_INSERT_MAX_BATCH: usize = 512;
/// Most `POST /write` requests whose events one transaction writes.
const EVENT_MAX_BATCH: usize = 256;
/// How long an API node's log writer may take to flush after the node stops.
const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// What to run. `api`, `worker` and `lb` are templates: ids and backends are filled in.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub listen: SocketAddr,
    /// Where the lb also serves HTTPS (its certificates in `lb.tls`).
    pub tls_listen: Option<SocketAddr>,
    pub api_nodes: usize,
    pub workers: usize,
    pub api: ApiConfig,
    pub worker: WorkerConfig,
    pub lb: LbConfig,
}

/// A running cluster.
pub struct Cluster {
    /// Where the load balancer listens.
    pub lb_addr: SocketAddr,
    /// Where it serves HTTPS, when asked to.
    pub lb_tls_addr: Option<SocketAddr>,
    /// (node id, address) of each API node.
    pub api_nodes: Vec<(String, SocketAddr)>,
    pub worker_ids: Vec<String>,
    pub lb: Arc<Lb>,
    lb_stop: CancellationToken,
    api_stop: CancellationToken,
    worker_stop: CancellationToken,
    lb_task: JoinHandle<std::io::Result<()>>,
    api_tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    worker_tasks: Vec<JoinHandle<WorkerReport>>,
    consumer_tasks: Vec<JoinHandle<()>>,
}

impl Cluster {
    /// Binds every listener and starts every part.
    pub async fn start(spec: ClusterSpec, store: SqlStore) -> anyhow::Result<Cluster> {
        let shared: Arc<dyn Store> = Arc::new(store.clone());
        let (lb_stop, api_stop, worker_stop) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let mut api_nodes = Vec::new();
        let mut api_tasks = Vec::new();
        for i in 1..=spec.api_nodes {
            let listener = crate::listen::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .context("binding an API node")?;
            let addr = listener.local_addr()?;
            let mut config = spec.api.clone();
            config.node_id = format!("api-{i}");
            api_nodes.push((config.node_id.clone(), addr));
            api_tasks.push(tokio::spawn(serve_api_node(
                listener,
                config,
                store.clone(),
                api_stop.clone().cancelled_owned(),
            )));
        }
        let mut worker_ids = Vec::new();
        let mut worker_tasks = Vec::new();
        let mut consumer_tasks = Vec::new();
        for i in 1..=spec.workers {
            let mut config = spec.worker.clone();
            config.worker_id = format!("worker-{i}");
            worker_ids.push(config.worker_id.clone());
            if let Some(buffer) = &spec.api.ingest_buffer {
                consumer_tasks.extend(spawn_ingest_consumers(
                    &shared,
                    buffer,
                    &config.worker_id,
                    &worker_stop,
                ));
            }
            worker_tasks.push(tokio::spawn(weir_worker::run(
                shared.clone(),
                config,
                worker_stop.clone(),
            )));
        }
        let mut lb_config = spec.lb.clone();
        lb_config.backends = api_nodes
            .iter()
            .map(|(_, addr)| format!("http://{addr}"))
            .collect();
        let lb = Lb::new(lb_config).map_err(anyhow::Error::msg)?;
        let listener = crate::listen::bind(spec.listen)
            .with_context(|| format!("binding the load balancer to {}", spec.listen))?;
        let lb_addr = listener.local_addr()?;
        let tls_listener = match spec.tls_listen {
            Some(addr) => Some(
                crate::listen::bind(addr)
                    .with_context(|| format!("binding --tls-listen {addr}"))?,
            ),
            None => None,
        };
        let lb_tls_addr = tls_listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let plain = weir_lb::run(listener, lb.clone(), lb_stop.clone().cancelled_owned());
        let https = tls_listener.map(|l| {
            tokio::spawn(weir_lb::serve_tls(
                l,
                lb.clone(),
                lb_stop.clone().cancelled_owned(),
            ))
        });
        // One task for the lb's listeners: it ends when both have drained.
        let lb_task = tokio::spawn(async move {
            let served = plain.await;
            match https {
                Some(task) => task.await.map_err(std::io::Error::other)?.and(served),
                None => served,
            }
        });
        Ok(Cluster {
            lb_addr,
            lb_tls_addr,
            api_nodes,
            worker_ids,
            lb,
            lb_stop,
            api_stop,
            worker_stop,
            lb_task,
            api_tasks,
            worker_tasks,
            consumer_tasks,
        })
    }

    /// Stops front to back: the lb stops accepting and finishes its requests,
    /// then the API nodes finish theirs and flush their logs, then the workers
    /// drain.
    pub async fn shutdown(self) -> anyhow::Result<Vec<WorkerReport>> {
        self.lb_stop.cancel();
        self.lb_task.await.context("lb task")??;
        self.api_stop.cancel();
        for task in self.api_tasks {
            task.await.context("API node task")??;
        }
        self.worker_stop.cancel();
        let mut reports = Vec::new();
        for task in self.worker_tasks {
            reports.push(task.await.context("worker task")?);
        }
        for task in self.consumer_tasks {
            task.await.context("ingest consumer task")?;
        }
        Ok(reports)
    }
}

/// Runs one API node until `shutdown`, then waits for its request log to flush.
pub async fn serve_api_node(
    listener: TcpListener,
    config: ApiConfig,
    store: SqlStore,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Requests ride out a busy or restarting database for a bounded time,
    // then get 503 database_busy.
    let retry = BusyRetry {
        budget: config.db_busy_timeout,
        ..BusyRetry::default()
    };
    let store: Arc<dyn Store> = Arc::new(store.with_busy_retry(retry));
    // A caller queued behind a commit stuck on an unreachable database
    // gives up within the same budget.
    let budget = config.db_busy_timeout;
    let (writer, writer_task) = RequestLogWriter::spawn(store.clone(), REQUEST_LOG_MAX_BATCH);
    let writer = writer.within(budget);
    let node_id = config.node_id.clone();
    let (task_inserts, inserts_task) =
        TaskInsertWriter::spawn_tasks(store.clone(), TASK_INSERT_MAX_BATCH);
    let task_inserts = task_inserts.within(budget);
    let (cache_access, cache_access_task) =
        CacheAccessRecorder::spawn(store.clone(), CACHE_STATS_FLUSH);
    let (events, events_task) = match &config.ingest_buffer {
        Some(b) => {
            let mut buffer = EventBuffer::connect(&b.redis_url, &b.stream, b.max_len)
                .await?
                .within(budget);
            if b.wait_aof {
                buffer = buffer.waiting_for_aof().await?;
            }
            if let Some(risk) = buffer.persistence_warning().await {
                tracing::warn!("{risk}");
            }
            (EventSink::Buffered(buffer), None)
        }
        None => {
            let (writer, task) = EventWriter::spawn_events(store.clone(), EVENT_MAX_BATCH);
            (EventSink::Direct(writer.within(budget)), Some(task))
        }
    };
    let state = AppState::new(config, store, writer, task_inserts, cache_access, events);
    weir_api::run(listener, state, shutdown)
        .await
        .with_context(|| format!("API node {node_id}"))?;
    // The writers end once every handle is gone, after writing what they hold.
    let flushed = tokio::time::timeout(LOG_FLUSH_TIMEOUT, async {
        if let Some(task) = events_task {
            let _ = task.await;
        }
        let _ = inserts_task.await;
        let _ = writer_task.await;
        let _ = cache_access_task.await;
    });
    if flushed.await.is_err() {
        tracing::warn!(node = %node_id, "request log did not flush in time");
    }
    Ok(())
}

/// Runs a worker's buffered-ingest consumers (`--ingest-consumers` of
/// them, each committing its own batches) beside it, until `stop`.
pub fn spawn_ingest_consumers(
    store: &Arc<dyn Store>,
    buffer: &weir_ingest::BufferConfig,
    worker_id: &str,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    buffer
        .consumers(worker_id)
        .into_iter()
        .map(|consumer| spawn_ingest_consumer(store.clone(), consumer, stop.clone()))
        .collect()
}

fn spawn_ingest_consumer(
    store: Arc<dyn Store>,
    config: weir_ingest::ConsumerConfig,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let name = config.consumer.clone();
        match weir_ingest::consumer::run(store, config, stop).await {
            Ok(report) => tracing::info!(
                consumer = %name,
                entries = report.entries,
                events = report.events,
                "ingest consumer stopped"
            ),
            Err(e) => tracing::error!(consumer = %name, error = %e, "ingest consumer failed"),
        }
    })
}
