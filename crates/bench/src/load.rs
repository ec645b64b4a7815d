//! `weir bench <url>`: HTTP load in the closed model (`-c` connections, each
//! sending its next request when the last is answered) or the open model
//! (`--rate`: requests due on a fixed schedule, latency counted from when each
//! was *due*, so a stall cannot hide by lowering the rate — no coordinated
//! omission).
//!
//! Each connection is one task with one hyper HTTP/1.1 connection and its own
//! HDR histogram and counters, merged at the end: nothing is shared on the hot
//! path except one atomic for the progress bar, so the generator keeps up with
//! wrk (see `bench/loadgen.sh`).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::raw_http::{self, RawConn};
use crate::report::Latency;

/// What each request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// The URL as given, with `--method`, headers and body.
    Plain,
    /// `GET /?message=…`: the logged hello.
    Hello,
    /// `POST /tasks` (md5) then poll `GET /tasks/{id}` until it is final; the
    /// latency is the task's, end to end.
    Tasks,
    /// `POST /write` with a batch of JSON events.
    Ingest,
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plain" => Ok(Scenario::Plain),
            "hello" => Ok(Scenario::Hello),
            "tasks" => Ok(Scenario::Tasks),
            "ingest" => Ok(Scenario::Ingest),
            _ => Err(format!(
                "unknown scenario {s:?}: plain, hello, tasks or ingest"
            )),
        }
    }
}

/// When the run ends.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    Requests(u64),
    Duration(Duration),
}

#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub url: Uri,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub connections: usize,
    pub stop: Stop,
    /// Requests per second in all (open model); `None`: closed model.
    pub rate: Option<f64>,
    pub scenario: Scenario,
    /// Events per `POST /write` in the ingest scenario.
    pub batch: usize,
    /// A request (or a task, in the tasks scenario) taking longer is an error.
    pub timeout: Duration,
    /// Makes task inputs and event ids unique to this run.
    pub run_id: String,
    /// The `Host` header: the URL's authority.
    pub host: HeaderValue,
    /// OS threads, each running its share of the connections.
    pub threads: usize,
    /// Set by [`run`]: the fixed request's bytes, for the raw fast path.
    pub raw_request: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub scenario: String,
    /// Requests answered (tasks finished, batches written), errors excluded.
    pub requests: u64,
    pub errors: u64,
    pub duration_s: f64,
    pub requests_per_sec: f64,
    /// Events per second (ingest scenario).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_per_sec: Option<f64>,
    pub latency: Latency,
    /// Latency of the admitted answers alone (1xx–3xx): what shedding keeps
    /// fast while the rest are refused.
    pub admitted_latency: Latency,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Failures without an answer, by kind (`connect`, `timeout`, `closed`, …).
    pub error_kinds: BTreeMap<String, u64>,
    /// Answers by `X-Weir-Node`: each API node's share.
    pub nodes: BTreeMap<String, u64>,
}

/// Per-connection tallies, merged at the end.
struct Tally {
    histogram: Histogram<u64>,
    /// Answers below 400 only.
    admitted: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    error_kinds: BTreeMap<&'static str, u64>,
    /// Few distinct values: a list beats hashing every answer's header.
    nodes: Vec<(HeaderValue, u64)>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            histogram: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            admitted: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            statuses: BTreeMap::new(),
            error_kinds: BTreeMap::new(),
            nodes: Vec::new(),
        }
    }

    /// Adds another thread's tally to this one.
    fn merge(&mut self, other: Tally) -> Result<(), String> {
        self.histogram
            .add(&other.histogram)
            .map_err(|e| e.to_string())?;
        self.admitted
            .add(&other.admitted)
            .map_err(|e| e.to_string())?;
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.error_kinds {
            *self.error_kinds.entry(k).or_default() += v;
        }
        for (k, v) in other.nodes {
            match self.nodes.iter_mut().find(|(n, _)| *n == k) {
                Some((_, c)) => *c += v,
                None => self.nodes.push((k, v)),
            }
        }
        Ok(())
    }

    fn node(&mut self, v: Option<&HeaderValue>) {
        let Some(v) = v else { return };
        match self.nodes.iter_mut().find(|(n, _)| n == v) {
            Some((_, c)) => *c += 1,
            None => self.nodes.push((v.clone(), 1)),
        }
    }
}

/// Runs the load; `done` counts finished requests as they finish (for a
/// progress bar).
pub async fn run(spec: LoadSpec, done: Arc<AtomicU64>) -> Result<LoadReport, String> {
    let addr = target_addr(&spec.url)?;
    let mut spec = spec;
    spec.raw_request = fixed_request(&spec);
    let spec = Arc::new(spec);
    let run = Run {
        connections: spec.connections.max(1),
        // Requests left to hand out (closed model with -n).
        budget: Arc::new(AtomicU64::new(match spec.stop {
            Stop::Requests(n) => n,
            Stop::Duration(_) => u64::MAX,
        })),
        started: Instant::now(),
        spec,
        addr,
        done,
    };
    // Like wrk's threads: one single-threaded runtime per thread, each with
    // its share of the connections, so a connection never changes threads.
    let threads = run.spec.threads.clamp(1, run.connections);
    let handles = (0..threads)
        .map(|t| run.clone().spawn_thread(t, threads))
        .collect::<Result<Vec<_>, _>>()?;
    let mut total = Tally::new();
    for rx in handles {
        total.merge(rx.await.map_err(|_| "a load thread died".to_string())??)?;
    }
    Ok(LoadReport::new(&run.spec, total, run.started.elapsed()))
}

/// `host:port` of an `http://` URL.
fn target_addr(url: &Uri) -> Result<String, String> {
    let authority = url
        .authority()
        .ok_or_else(|| format!("{url}: no host"))?
        .clone();
    if url.scheme_str() != Some("http") {
        return Err(format!("{url}: only http:// is supported"));
    }
    Ok(format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    ))
}

/// What the load threads share.
#[derive(Clone)]
struct Run {
    spec: Arc<LoadSpec>,
    addr: String,
    connections: usize,
    budget: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    started: Instant,
}

type ThreadTally = tokio::sync::oneshot::Receiver<Result<Tally, String>>;

impl Run {
    fn deadline(&self) -> Option<Instant> {
        match self.spec.stop {
            Stop::Duration(d) => Some(self.started + d),
            Stop::Requests(_) => None,
        }
    }

    /// Thread `t` of `threads`, running connections `t, t + threads, …`; its
    /// tally arrives on the receiver.
    fn spawn_thread(self, t: usize, threads: usize) -> Result<ThreadTally, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("weir-bench-{t}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string());
                let tally = runtime.and_then(|rt| rt.block_on(self.thread(t, threads)));
                let _ = tx.send(tally);
            })
            .map_err(|e| format!("starting a load thread: {e}"))?;
        Ok(rx)
    }

    async fn thread(self, t: usize, threads: usize) -> Result<Tally, String> {
        // One tally per thread, shared by its connections: the lock is never
        // contended (one thread) and memory does not grow with -c (an HDR
        // histogram is ~0.5 MB).
        let tally = Arc::new(Mutex::new(Tally::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for c in (t..self.connections).step_by(threads) {
            let (run, tally) = (self.clone(), tally.clone());
            tasks.spawn(async move {
                let budget = matches!(run.spec.stop, Stop::Requests(_)).then_some(&*run.budget);
                let shared = Shared {
                    spec: &run.spec,
                    addr: &run.addr,
                    deadline: run.deadline(),
                    budget,
                    done: &run.done,
                    tally: &tally,
                };
                connection(shared, c, run.schedule(c)).await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.map_err(|e| format!("a load task failed: {e}"))?;
        }
        let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner());
        Ok(std::mem::replace(&mut *tally, Tally::new()))
    }

    /// Open model: connection `c`'s first due time and interval, staggered
    /// so the connections' requests interleave evenly.
    fn schedule(&self, c: usize) -> Option<(Instant, Duration)> {
        let connections = self.connections as f64;
        self.spec.rate.map(|rate| {
            let interval = Duration::from_secs_f64(connections / rate.max(0.001));
            (
                self.started + interval.mul_f64(c as f64 / connections),
                interval,
            )
        })
    }
}

impl LoadReport {
    fn new(spec: &LoadSpec, total: Tally, elapsed: Duration) -> Self {
        let elapsed = elapsed.as_secs_f64();
        let requests = total.histogram.len();
        LoadReport {
            scenario: format!("{:?}", spec.scenario).to_lowercase(),
            requests,
            errors: total.error_kinds.values().sum(),
            duration_s: elapsed,
            requests_per_sec: requests as f64 / elapsed,
            events_per_sec: (spec.scenario == Scenario::Ingest)
                .then(|| (requests * spec.batch as u64) as f64 / elapsed),
            latency: Latency::from_histogram(&total.histogram),
            admitted_latency: Latency::from_histogram(&total.admitted),
            statuses: total.statuses,
            error_kinds: total
                .error_kinds
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            nodes: total
                .nodes
                .into_iter()
                .map(|(k, v)| (String::from_utf8_lossy(k.as_bytes()).into_owned(), v))
                .collect(),
        }
    }
}

/// What every connection of one thread shares.
#[derive(Clone, Copy)]
struct Shared<'a> {
    spec: &'a LoadSpec,
    addr: &'a str,
    deadline: Option<Instant>,
    /// Requests left to hand out (with -n only).
    budget: Option<&'a AtomicU64>,
    /// Finished requests, for the progress bar.
    done: &'a AtomicU64,
    tally: &'a Mutex<Tally>,
}

async fn connection(shared: Shared<'_>, conn_index: usize, schedule: Option<(Instant, Duration)>) {
    let Shared {
        spec,
        addr,
        deadline,
        budget,
        done,
        tally,
    } = shared;
    let record = |f: &mut dyn FnMut(&mut Tally)| {
        f(&mut tally.lock().unwrap_or_else(|e| e.into_inner()));
    };
    let mut link: Option<Link> = None;
    let mut due = schedule.map(|(first, _)| first);
    let mut seq = 0u64;
    let mut unreported = 0u64;
    loop {
        if let Some(d) = deadline {
            match due {
                // Open model: everything due before the deadline is sent,
                // however late (that lateness is what it measures) — but not
                // past a request timeout after it; what is left counts as
                // `not_sent`.
                Some(next) if next >= d => break,
                Some(next) if Instant::now() >= d + spec.timeout => {
                    let interval = schedule.map_or(Duration::from_secs(1), |(_, i)| i);
                    let left = ((d - next).as_secs_f64() / interval.as_secs_f64()).ceil() as u64;
                    record(&mut |t| *t.error_kinds.entry("not_sent").or_default() += left);
                    break;
                }
                Some(_) => {}
                None if Instant::now() >= d => break,
                None => {}
            }
        }
        // The shared budget only exists with -n; a duration needs no
        // cross-thread traffic per request.
        if let Some(budget) = budget {
            if budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_err()
            {
                break;
            }
        }
        if let Some(d) = due {
            tokio::time::sleep_until(d.into()).await;
        }
        let began = due.unwrap_or_else(Instant::now);
        seq += 1;
        let outcome = match link.as_mut() {
            Some(l) => l.run(spec, conn_index, seq).await,
            None => match Link::connect(spec, addr).await {
                Ok(mut l) => {
                    let r = l.run(spec, conn_index, seq).await;
                    link = Some(l);
                    r
                }
                Err(kind) => Err(kind),
            },
        };
        match outcome {
            Ok((status, node, close)) => {
                let took = (began.elapsed().as_micros() as u64).max(1);
                record(&mut |t| {
                    t.histogram.saturating_record(took);
                    if status < 400 {
                        t.admitted.saturating_record(took);
                    }
                    *t.statuses.entry(status).or_default() += 1;
                    t.node(node.as_ref());
                });
                if close {
                    link = None;
                }
            }
            Err(kind) => {
                record(&mut |t| *t.error_kinds.entry(kind).or_default() += 1);
                link = None;
                // A refused connection must not spin a core.
                if kind == "connect" {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        unreported += 1;
        if unreported == PROGRESS_BATCH {
            done.fetch_add(unreported, Ordering::Relaxed);
            unreported = 0;
        }
        if let (Some(d), Some((_, interval))) = (due.as_mut(), schedule) {
            *d += interval;
        }
    }
    done.fetch_add(unreported, Ordering::Relaxed);
}

/// Finished requests are added to the shared progress count in batches.
const PROGRESS_BATCH: u64 = 32;

/// One keep-alive connection: the raw fast path for a fixed request (plain
/// and hello), hyper for the scenarios that build each request. hyper's
/// connection future is polled by the same task that sends the requests, not
/// spawned, so a request and its answer never cross tasks.
enum Link {
    /// With one timer, re-armed per request rather than created and dropped.
    Raw(RawConn, Pin<Box<tokio::time::Sleep>>),
    Hyper {
        sender: SendRequest<Full<Bytes>>,
        conn: Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
    },
}

impl Link {
    async fn connect(spec: &LoadSpec, addr: &str) -> Result<Link, &'static str> {
        if spec.raw_request.is_some() {
            let conn = RawConn::connect(addr, spec.method.as_str())
                .await
                .map_err(|_| "connect")?;
            let timer = Box::pin(tokio::time::sleep(spec.timeout));
            return Ok(Link::Raw(conn, timer));
        }
        let stream = TcpStream::connect(addr).await.map_err(|_| "connect")?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| "connect")?;
        Ok(Link::Hyper {
            sender,
            conn: Box::pin(conn),
        })
    }

    /// One unit of work; `Ok(.., true)` when the server closes the connection.
    async fn run(
        &mut self,
        spec: &LoadSpec,
        conn_index: usize,
        seq: u64,
    ) -> Result<(u16, Option<HeaderValue>, bool), &'static str> {
        match self {
            Link::Raw(conn, timer) => {
                let request = spec.raw_request.as_deref().unwrap_or_default();
                timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + spec.timeout);
                tokio::select! {
                    biased;
                    answer = conn.exchange(request) => answer.map(|a| (a.status, a.node, a.close)),
                    _ = timer.as_mut() => Err("timeout"),
                }
            }
            Link::Hyper { sender, conn } => tokio::select! {
                biased;
                outcome = one(spec, sender, conn_index, seq) => outcome.map(|(s, n)| (s, n, false)),
                // The connection ended (closed by the server, or broken).
                _ = conn.as_mut() => Err("closed"),
            },
        }
    }
}

/// The bytes of the one request the plain and hello scenarios repeat.
pub fn fixed_request(spec: &LoadSpec) -> Option<Vec<u8>> {
    let host = spec.host.to_str().ok()?;
    match spec.scenario {
        Scenario::Plain => Some(raw_http::build_request(
            spec.method.as_str(),
            spec.url.path_and_query().map_or("/", |p| p.as_str()),
            host,
            &spec.headers,
            &spec.body,
        )),
        Scenario::Hello => Some(raw_http::build_request(
            "GET",
            "/?message=bench",
            host,
            &spec.headers,
            b"",
        )),
        Scenario::Tasks | Scenario::Ingest => None,
    }
}

/// One unit of work: a request, or a task submitted and polled to its end.
/// Answers the final status and the node that answered.
async fn one(
    spec: &LoadSpec,
    sender: &mut SendRequest<Full<Bytes>>,
    conn_index: usize,
    seq: u64,
) -> Result<(u16, Option<HeaderValue>), &'static str> {
    let timed = tokio::time::timeout(spec.timeout, async {
        match spec.scenario {
            Scenario::Plain => {
                let path = spec.url.path_and_query().map_or("/", |p| p.as_str());
                send(spec, sender, spec.method.clone(), path, spec.body.clone()).await
            }
            Scenario::Hello => send(spec, sender, Method::GET, "/?message=bench", Bytes::new()).await,
            Scenario::Ingest => {
                let mut body = String::with_capacity(spec.batch * 64);
                for k in 0..spec.batch {
                    body.push_str(&format!(
                        "{{\"id\":\"{}-{conn_index}-{seq}-{k}\",\"kind\":\"bench\",\"value\":{k}}}\n",
                        spec.run_id
                    ));
                }
                send(spec, sender, Method::POST, "/write", Bytes::from(body)).await
            }
            Scenario::Tasks => task(spec, sender, conn_index, seq).await,
        }
    })
    .await;
    timed.unwrap_or(Err("timeout"))
}

async fn task(
    spec: &LoadSpec,
    sender: &mut SendRequest<Full<Bytes>>,
    conn_index: usize,
    seq: u64,
) -> Result<(u16, Option<HeaderValue>), &'static str> {
    let submit = format!(
        "{{\"type\":\"md5\",\"input\":{{\"string\":\"bench-{}-{conn_index}-{seq}\"}}}}",
        spec.run_id
    );
    let (status, node, body) =
        exchange(spec, sender, Method::POST, "/tasks", submit.into()).await?;
    if status != 202 && status != 200 {
        return Ok((status, node));
    }
    let answer: Value = serde_json::from_slice(&body).map_err(|_| "bad_answer")?;
    let Some(id) = answer["task_id"].as_str() else {
        // Answered from the cache: done already.
        return Ok((status, node));
    };
    let path = format!("/tasks/{id}");
    let mut pause = Duration::from_millis(1);
    loop {
        let (status, node, body) = exchange(spec, sender, Method::GET, &path, Bytes::new()).await?;
        if status != 200 {
            return Ok((status, node));
        }
        let task: Value = serde_json::from_slice(&body).map_err(|_| "bad_answer")?;
        if matches!(
            task["status"].as_str(),
            Some("succeeded" | "dead" | "cancelled")
        ) {
            return Ok((status, node));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

async fn send(
    spec: &LoadSpec,
    sender: &mut SendRequest<Full<Bytes>>,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<(u16, Option<HeaderValue>), &'static str> {
    let (status, node, _) = exchange(spec, sender, method, path, body).await?;
    Ok((status, node))
}

async fn exchange(
    spec: &LoadSpec,
    sender: &mut SendRequest<Full<Bytes>>,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<(u16, Option<HeaderValue>, Bytes), &'static str> {
    let mut req = Request::builder().method(method).uri(path);
    let headers = req.headers_mut().expect("a fresh builder");
    headers.insert(HOST, spec.host.clone());
    if !body.is_empty() && spec.scenario != Scenario::Plain {
        let kind = if spec.scenario == Scenario::Ingest {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    }
    for (k, v) in &spec.headers {
        headers.insert(k.clone(), v.clone());
    }
    let req = req.body(Full::new(body)).map_err(|_| "bad_request")?;
    sender.ready().await.map_err(|_| "closed")?;
    let resp = sender.send_request(req).await.map_err(classify)?;
    let status = resp.status().as_u16();
    let node = resp.headers().get("x-weir-node").cloned();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|_| "closed")?
        .to_bytes();
    Ok((status, node, body))
}

fn classify(e: hyper::Error) -> &'static str {
    if e.is_canceled() || e.is_incomplete_message() || e.is_closed() {
        "closed"
    } else if e.is_parse() {
        "bad_response"
    } else if e.is_timeout() {
        "timeout"
    } else {
        "io"
    }
}
