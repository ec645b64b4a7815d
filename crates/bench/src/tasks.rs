//! End-to-end task throughput: submit `tasks` md5 tasks of distinct inputs
//! through the lb, `concurrency` at a time, wait until all succeeded, and read
//! each task's own timestamps: throughput is tasks over the span from the first
//! submission to the last completion; latency is `started_at - created_at`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{json, Value};

use crate::report::Latency;
use crate::{json_call, BenchError};

/// What to run.
#[derive(Clone, Debug)]
pub struct TasksBench {
    /// The lb (or an API node), e.g. `http://127.0.0.1:8080`.
    pub target: String,
    pub tasks: usize,
    pub concurrency: usize,
    /// Makes inputs distinct across runs on one store (so none is a cache hit).
    pub run_id: String,
    /// How long to wait for the last task.
    pub timeout: Duration,
    /// Submit at this fixed rate (tasks/s) instead of as fast as the clients can.
    pub rate: Option<f64>,
    /// Tasks of this type through `POST /tasks` (input `{"n": i, "run": …}`);
    /// `None`: md5 hashes through `POST /hash/md5`.
    pub task_type: Option<String>,
}

/// What it measured.
#[derive(Clone, Debug, Serialize)]
pub struct TasksReport {
    pub tasks: usize,
    /// Submissions per second as the clients saw them.
    pub submit_per_sec: f64,
    /// Tasks per second from first submission to last completion.
    pub tasks_per_sec: f64,
    /// From the task's creation to a worker starting it.
    pub submit_to_start: Latency,
    /// Submit call round trip as the client saw it.
    pub submit_rtt: Latency,
}

pub async fn run(b: &TasksBench) -> Result<TasksReport, BenchError> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(b.concurrency)
        .build()
        .expect("an HTTP client");
    let url = match b.task_type {
        Some(_) => format!("{}/tasks", b.target),
        None => format!("{}/hash/md5", b.target),
    };
    let started = Instant::now();
    let submitted: Vec<(String, Duration)> = stream::iter(0..b.tasks)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            let body = match &b.task_type {
                Some(t) => json!({"type": t, "input": {"n": i, "run": b.run_id}}),
                None => json!({"string": format!("bench-{}-{i}", b.run_id)}),
            };
            let due = b
                .rate
                .map(|r| started + Duration::from_secs_f64(i as f64 / r.max(1.0)));
            async move {
                if let Some(due) = due {
                    tokio::time::sleep_until(due.into()).await;
                }
                let t0 = Instant::now();
                let (_, body) = json_call(http.post(&url).json(&body), &url, &[202]).await?;
                let id = body["task_id"]
                    .as_str()
                    .ok_or_else(|| BenchError::Unexpected {
                        url: url.clone(),
                        detail: body.to_string(),
                    })?;
                Ok::<_, BenchError>((id.to_string(), t0.elapsed()))
            }
        })
        .buffer_unordered(b.concurrency)
        .try_collect()
        .await?;
    let submit_secs = started.elapsed().as_secs_f64();

    // Read every task back once it is done (polling each, slowest last).
    let deadline = Instant::now() + b.timeout;
    let tasks: Vec<Value> = stream::iter(submitted.iter().map(|(id, _)| id.clone()))
        .map(|id| {
            let http = http.clone();
            let url = format!("{}/tasks/{id}", b.target);
            async move { wait_done(&http, &url, &id, deadline, b.timeout).await }
        })
        .buffer_unordered(b.concurrency.min(16))
        .try_collect()
        .await?;

    let mut first_created: Option<DateTime<Utc>> = None;
    let mut last_completed: Option<DateTime<Utc>> = None;
    let mut waits = Vec::with_capacity(tasks.len());
    for t in &tasks {
        let created = time(t, "created_at")?;
        let begun = time(t, "started_at")?;
        let completed = time(t, "completed_at")?;
        first_created = Some(first_created.map_or(created, |f| f.min(created)));
        last_completed = Some(last_completed.map_or(completed, |l| l.max(completed)));
        waits.push((begun - created).to_std().unwrap_or_default());
    }
    let span = match (first_created, last_completed) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default().as_secs_f64(),
        _ => 0.0,
    };
    Ok(TasksReport {
        tasks: tasks.len(),
        submit_per_sec: b.tasks as f64 / submit_secs.max(1e-9),
        tasks_per_sec: tasks.len() as f64 / span.max(1e-9),
        submit_to_start: Latency::from_durations(waits),
        submit_rtt: Latency::from_durations(submitted.iter().map(|(_, d)| *d)),
    })
}

/// Polls one task until it succeeded.
pub(crate) async fn wait_done(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    deadline: Instant,
    waited: Duration,
) -> Result<Value, BenchError> {
    let mut pause = Duration::from_millis(2);
    loop {
        let (_, task) = json_call(http.get(url), url, &[200]).await?;
        match task["status"].as_str() {
            Some("succeeded") => return Ok(task),
            Some("dead") => {
                return Err(BenchError::Unexpected {
                    url: url.to_string(),
                    detail: format!("task died: {task}"),
                })
            }
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(BenchError::Timeout {
                id: id.to_string(),
                waited,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

pub(crate) fn time(task: &Value, field: &str) -> Result<DateTime<Utc>, BenchError> {
    task[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| BenchError::Unexpected {
            url: String::new(),
            detail: format!("task without {field}: {task}"),
        })
}
