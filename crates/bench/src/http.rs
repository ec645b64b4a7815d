//! Constant-rate HTTP load (open loop, like wrk2): requests are scheduled at
//! fixed intervals whatever the answers do, and each latency is measured from
//! when the request was *due*, so a stall shows up in the percentiles instead
//! of silently lowering the rate (no coordinated omission).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::report::Latency;

#[derive(Clone, Debug)]
pub struct RateBench {
    pub url: String,
    /// Requests per second, in all.
    pub rate: u32,
    pub duration: Duration,
    /// Concurrent connections the schedule is spread over.
    pub connections: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct RateReport {
    pub requests: u64,
    pub latency: Latency,
    /// Answers by status code; transport errors under 0.
    pub statuses: BTreeMap<u16, u64>,
}

pub async fn run(b: &RateBench) -> RateReport {
    let connections = b.connections.max(1);
    let interval = Duration::from_secs_f64(connections as f64 / f64::from(b.rate.max(1)));
    let start = Instant::now() + Duration::from_millis(50);
    let mut workers = tokio::task::JoinSet::new();
    for c in 0..connections {
        let url = b.url.clone();
        let duration = b.duration;
        // One client per connection, so each keeps its own keep-alive socket.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .expect("an HTTP client");
        let offset = interval.mul_f64(c as f64 / connections as f64);
        workers.spawn(async move {
            let mut samples = Vec::new();
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            let mut due = start + offset;
            while due < start + duration {
                tokio::time::sleep_until(due.into()).await;
                let status = match http.get(&url).send().await {
                    Ok(resp) => {
                        let s = resp.status().as_u16();
                        let _ = resp.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                samples.push(due.elapsed());
                *statuses.entry(status).or_default() += 1;
                due += interval;
            }
            (samples, statuses)
        });
    }
    let mut samples = Vec::new();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    while let Some(Ok((s, st))) = workers.join_next().await {
        samples.extend(s);
        for (k, v) in st {
            *statuses.entry(k).or_default() += v;
        }
    }
    RateReport {
        requests: samples.len() as u64,
        latency: Latency::from_durations(samples),
        statuses,
    }
}
