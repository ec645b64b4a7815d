//! Wake-up latency: submit one task at a time into an otherwise idle system
//! and measure how long it waits before a worker starts it — the push path
//! (LISTEN/NOTIFY, or the in-process wake-up), not the polling fallback.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::report::Latency;
use crate::tasks::{time, wait_done};
use crate::{json_call, BenchError};

#[derive(Clone, Debug)]
pub struct IdleBench {
    pub target: String,
    pub samples: usize,
    /// Pause between one task finishing and the next submission, so workers are idle.
    pub gap: Duration,
    pub run_id: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct IdleReport {
    pub submit_to_start: Latency,
}

pub async fn run(b: &IdleBench) -> Result<IdleReport, BenchError> {
    let http = reqwest::Client::new();
    let url = format!("{}/hash/md5", b.target);
    let mut waits = Vec::with_capacity(b.samples);
    for i in 0..b.samples {
        tokio::time::sleep(b.gap).await;
        let input = format!("idle-{}-{i}", b.run_id);
        let (_, body) = json_call(
            http.post(&url).json(&json!({"string": input})),
            &url,
            &[202],
        )
        .await?;
        let id = body["task_id"].as_str().unwrap_or_default().to_string();
        let task_url = format!("{}/tasks/{id}", b.target);
        let timeout = Duration::from_secs(30);
        let task = wait_done(&http, &task_url, &id, Instant::now() + timeout, timeout).await?;
        let wait = time(&task, "started_at")? - time(&task, "created_at")?;
        waits.push(wait.to_std().unwrap_or_default());
    }
    Ok(IdleReport {
        submit_to_start: Latency::from_durations(waits),
    })
}
