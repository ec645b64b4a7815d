//! weir's load generators, run by `weir bench` and the scripts under `bench/`.
//!
//! # Layout
//! - [`tasks`]: submit many md5 tasks through the lb at a fixed concurrency;
//!   end-to-end tasks/s and submit-to-start latency, read from the tasks' own
//!   timestamps.
//! - [`idle`]: one task at a time into an idle system: how fast a sleeping
//!   worker wakes.
//! - [`load`]: `weir bench <url>`: closed or open model over raw hyper
//!   connections, scenarios (hello, tasks, ingest), per-node shares.
//! - [`raw_http`]: the generator's fast path: a fixed request over a raw
//!   keep-alive connection, answers read with httparse.
//! - [`http`]: constant-rate HTTP load with latency from each request's due time.
//! - [`upstream`]: a trivial (optionally slow, optionally failing) upstream for lb benchmarks.
//! - [`report`]: latency summaries.
//! - [`cpu`]: CPU time of this process and of others (a database server), from `/proc`.

pub mod cpu;
pub mod http;
pub mod idle;
pub mod load;
pub mod raw_http;
pub mod report;
pub mod tasks;
pub mod upstream;

use std::time::Duration;

use serde_json::Value;

/// What can stop a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("task {id} did not finish within {waited:?}")]
    Timeout { id: String, waited: Duration },
    #[error("unexpected answer from {url}: {detail}")]
    Unexpected { url: String, detail: String },
}

/// Sends a request and reads a JSON answer, expecting one of `ok` statuses.
pub(crate) async fn json_call(
    req: reqwest::RequestBuilder,
    url: &str,
    ok: &[u16],
) -> Result<(u16, Value), BenchError> {
    let resp = req.send().await.map_err(|source| BenchError::Http {
        url: url.to_string(),
        source,
    })?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|source| BenchError::Http {
        url: url.to_string(),
        source,
    })?;
    if !ok.contains(&status) {
        return Err(BenchError::Status {
            url: url.to_string(),
            status,
            body,
        });
    }
    let value = serde_json::from_str(&body).map_err(|e| BenchError::Unexpected {
        url: url.to_string(),
        detail: format!("{e}: {body}"),
    })?;
    Ok((status, value))
}
