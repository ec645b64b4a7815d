//! A Rust handler adds steps to its own workflow (a batch) through its
//! `Job`: the step after it runs once the batch has ended, with every
//! result, and a retried attempt adding the same steps stores them once.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use weir_core::{ParentFailure, TaskTypeConfig, TaskTypes, WorkflowStatus};
use weir_store::{StepSubmission, Submission, Submitter, WorkflowSubmission};
use weir_worker::{Handler, HandlerError, Handlers, Job, WorkerConfig};

/// Adds one md5 step per word of its input, then fails its first attempt
/// (as a crash after adding would) and succeeds the next.
struct Split {
    attempts: AtomicU32,
}

#[async_trait]
impl Handler for Split {
    async fn run(&self, job: Job) -> Result<Value, HandlerError> {
        let words: Vec<String> = job.input["words"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(str::to_owned))
            .collect();
        let steps = words
            .iter()
            .map(|w| step(&format!("hash-{w}"), "md5", json!({ "string": w }), &[]))
            .collect();
        let added = job
            .workflow
            .add(steps)
            .await
            .map_err(|e| HandlerError::permanent(e.to_string()))?;
        if self.attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(HandlerError::retryable("crashed after adding"));
        }
        Ok(json!({ "added": added.steps.len(), "replayed": added.replayed }))
    }
}

fn step(id: &str, kind: &str, input: Value, parents: &[&str]) -> StepSubmission {
    StepSubmission {
        id: id.into(),
        task: Submission::new(kind, input),
        depends_on: parents.iter().map(|p| p.to_string()).collect(),
        on_parent_failure: ParentFailure::Cancel,
        with_parent_results: !parents.is_empty(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_handler_adds_a_batch_and_the_next_step_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("weir.db").display());
    let store = weir_store_sql::open_shared(&weir_store_sql::StoreOptions::new(url))
        .await
        .unwrap();
    let mut types = TaskTypes::default();
    types
        .insert(TaskTypeConfig::parse_flag("split=rust").unwrap())
        .unwrap();
    let types = Arc::new(types);
    let submitter = Submitter::new(store.clone(), types.clone(), 3, Duration::ZERO);
    let submitted = submitter
        .submit_workflow(
            WorkflowSubmission {
                name: Some("batch".into()),
                steps: vec![
                    step(
                        "split",
                        "split",
                        json!({"words": ["a", "b", "c", "d", "e"]}),
                        &[],
                    ),
                    step("report", "noop", json!({}), &["split"]),
                ],
                ..Default::default()
            },
            100,
        )
        .await
        .unwrap();

    let mut config = WorkerConfig::new("batch-worker");
    config.task_types = types.clone();
    config.handlers = Handlers::from_types(&types).unwrap();
    config
        .handlers
        .register(
            "split",
            Split {
                attempts: AtomicU32::new(0),
            },
        )
        .unwrap();
    config.retry = weir_core::RetryPolicy {
        base: Duration::from_millis(10),
        cap: Duration::from_millis(50),
    };
    config.poll_interval = Duration::from_millis(50);
    let stop = CancellationToken::new();
    let worker = tokio::spawn(weir_worker::run(store.clone(), config, stop.clone()));

    let deadline = Instant::now() + Duration::from_secs(30);
    let w = loop {
        let w = store.workflow_get(submitted.id).await.unwrap().unwrap();
        if w.status != WorkflowStatus::Running {
            break w;
        }
        assert!(Instant::now() < deadline, "still running: {w:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.cancel();
    worker.await.unwrap();

    assert_eq!(w.status, WorkflowStatus::Succeeded, "{w:?}");
    assert_eq!(w.steps.len(), 7, "split, report and five hashes, once");
    let split = w.steps.iter().find(|s| s.id == "split").unwrap();
    assert_eq!(split.attempts, 2);
    assert_eq!(split.result, Some(json!({"added": 5, "replayed": true})));
    let report = w.steps.iter().find(|s| s.id == "report").unwrap();
    let report = store.task_get(report.task_id).await.unwrap().unwrap();
    let parents = report.input["parents"].as_object().unwrap();
    assert_eq!(parents.len(), 6, "{parents:?}");
    for word in ["a", "b", "c", "d", "e"] {
        let hash = w.steps.iter().find(|s| s.id == format!("hash-{word}"));
        let hash = hash.unwrap();
        let hashed = store.task_get(hash.task_id).await.unwrap().unwrap();
        assert!(report.started_at.unwrap() >= hashed.completed_at.unwrap());
        assert_eq!(parents[&hash.id], hashed.result.clone().unwrap());
    }
}
