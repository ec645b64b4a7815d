//! A worker binary with a Rust handler of its own: the `slugify` task type.
//!
//! The API nodes accept the type once it is declared (`--task-type
//! slugify=rust`, or `[task_types.slugify] handler = "rust"` with its schema
//! and timeout); `weir worker` processes never claim it, because they have
//! no handler for it; this binary claims only it, from the same store:
//!
//! ```sh
//! weir up --task-type slugify=rust &
//! WEIR_DATABASE_URL=sqlite://weir-data/weir.db cargo run -p weir-example-custom-handler
//! curl -X POST localhost:8080/tasks -d '{"type":"slugify","input":{"title":"Hello, World!"}}'
//! ```

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use weir_worker::{Handler, HandlerError, Handlers, Job, WorkerConfig};

/// `{"title": S}` → `{"slug": "hello-world"}`.
struct Slugify;

#[async_trait]
impl Handler for Slugify {
    async fn run(&self, job: Job) -> Result<Value, HandlerError> {
        let title = job
            .input
            .get("title")
            .and_then(Value::as_str)
            .ok_or_else(|| HandlerError::permanent("input.title must be a string"))?;
        let slug = title
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join("-");
        job.progress.set(100);
        Ok(json!({ "slug": slug, "attempt": job.attempt }))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("WEIR_DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("set WEIR_DATABASE_URL to the cluster's store"))?;
    let store = weir_store_sql::open_shared(&weir_store_sql::StoreOptions::new(url)).await?;
    let mut config = WorkerConfig::new(format!("custom-{}", std::process::id()));
    // Only this binary's own type: the built-ins are left to `weir worker`.
    config.handlers = Handlers::default();
    config.handlers.register("slugify", Slugify)?;
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        on_signal.cancel();
    });
    println!("custom-handler: {} running slugify", config.worker_id);
    let report = weir_worker::run(store, config, stop).await;
    println!(
        "custom-handler: stopped: {} succeeded, {} failed",
        report.processed, report.failed
    );
    Ok(())
}
