//! `weir bench <url>`: load a URL (or the system behind it, by scenario) and
//! print a summary; see `weir_bench::load`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use http::header::{HeaderName, HeaderValue};
use indicatif::{ProgressBar, ProgressStyle};
use weir_bench::load::{self, LoadReport, LoadSpec, Scenario, Stop};

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The URL to load (the lb's, for the hello, tasks and ingest scenarios).
    pub url: Option<String>,
    /// Connections, each one request at a time.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub connections: usize,
    /// Threads the connections are spread over (default: one per core).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Stop after this many requests (default: run for --duration).
    #[arg(short = 'n', long, conflicts_with = "duration")]
    pub requests: Option<u64>,
    /// Stop after this long.
    #[arg(short = 'd', long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Open model: this many requests per second in all, latency counted from
    /// each request's due time (default: closed model, as fast as answered).
    #[arg(long)]
    pub rate: Option<f64>,
    /// plain (the URL as given), hello (GET /?message=), tasks (submit md5
    /// tasks, poll each to its end), ingest (POST /write batches).
    #[arg(long, default_value = "plain")]
    pub scenario: Scenario,
    #[arg(short = 'm', long, default_value = "GET")]
    pub method: http::Method,
    /// A header, `Name: value`; repeat for more.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// The request body.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// The request body, from a file.
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Events per POST /write in the ingest scenario.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// A request (a task, in the tasks scenario) taking longer is an error.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let Some(url) = &args.url else {
        bail!("give a URL to load (weir bench http://127.0.0.1:8080 -c 64 -d 10s) or a subcommand (weir bench --help)");
    };
    let url: http::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
    let host = url
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .with_context(|| format!("{url}: no host"))?;
    let mut headers = Vec::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("header {h:?}: expected `Name: value`"))?;
        headers.push((
            HeaderName::try_from(name.trim()).with_context(|| format!("header name {name:?}"))?,
            HeaderValue::try_from(value.trim())
                .with_context(|| format!("header value {value:?}"))?,
        ));
    }
    let body = match (&args.body, &args.body_file) {
        (Some(b), _) => Bytes::from(b.clone()),
        (None, Some(path)) => {
            Bytes::from(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        (None, None) => Bytes::new(),
    };
    let stop = match (args.requests, args.duration) {
        (Some(n), _) => Stop::Requests(n),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Duration(Duration::from_secs(10)),
    };
    if args.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        bail!("--rate must be above 0");
    }
    let spec = LoadSpec {
        url,
        method: args.method.clone(),
        headers,
        body,
        connections: args.connections.max(1),
        stop,
        rate: args.rate,
        scenario: args.scenario,
        batch: args.batch.max(1),
        timeout: args.timeout,
        run_id: format!("{:x}", rand::random::<u64>()),
        host,
        raw_request: None,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
    };
    let done = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(stop, args.quiet || args.json);
    let ticker = {
        let (bar, done) = (bar.clone(), done.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let n = done.load(Ordering::Relaxed);
                match stop {
                    Stop::Requests(_) => bar.set_position(n),
                    Stop::Duration(_) => bar.set_position(started.elapsed().as_millis() as u64),
                }
                let rate = n as f64 / started.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!("{n} done, {rate:.0}/s"));
            }
        })
    };
    let report = load::run(spec, done).await.map_err(anyhow::Error::msg);
    ticker.abort();
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

fn progress_bar(stop: Stop, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let (len, template) = match stop {
        Stop::Requests(n) => (n, "{bar:40} {pos}/{len} {msg}"),
        Stop::Duration(d) => (d.as_millis() as u64, "{bar:40} {elapsed}/{duration} {msg}"),
    };
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// The human summary.
pub fn render(r: &LoadReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} answered, {} errors in {:.2} s: {:.0} requests/s",
        r.scenario, r.requests, r.errors, r.duration_s, r.requests_per_sec
    );
    if let Some(e) = r.events_per_sec {
        let _ = writeln!(out, "events: {e:.0}/s");
    }
    let l = &r.latency;
    let _ = writeln!(
        out,
        "latency: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
    );
    let statuses: Vec<String> = r
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    let _ = writeln!(out, "statuses: {}", statuses.join(", "));
    if !r.error_kinds.is_empty() {
        let kinds: Vec<String> = r
            .error_kinds
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(out, "errors: {}", kinds.join(", "));
    }
    if !r.nodes.is_empty() {
        let total: u64 = r.nodes.values().sum();
        let fair = 100.0 / r.nodes.len() as f64;
        let shares: Vec<String> = r
            .nodes
            .iter()
            .map(|(n, c)| format!("{n} {:.1}%", *c as f64 * 100.0 / total as f64))
            .collect();
        let _ = writeln!(out, "nodes (fair share {fair:.1}%): {}", shares.join(", "));
    }
    out
}
