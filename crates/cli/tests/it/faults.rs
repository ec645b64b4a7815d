//! The fault suite: an API node and two workers reach PostgreSQL and Redis
//! through fault proxies that add latency, cap bandwidth, reset every
//! connection and black-hole all traffic, in turn, while clients submit
//! tasks and buffered events. Afterwards a set checker compares what was
//! stored with what was acknowledged: every task acknowledged with 202
//! reaches exactly one terminal state, every acknowledged event is stored
//! exactly once, and every repeated execution is explained by a lost lease.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weir_testkit::fault_proxy::{url_target, Fault, FaultProxy};
use weir_testkit::set_check::SetHistory;
use weir_testkit::RedisPrefix;

use crate::processes::{listening_url, migrated_database, WeirProcess};
use crate::support::poll;

/// What clients were answered, by status (0: no answer in time).
#[derive(Default)]
struct Answers {
    by_status: Mutex<BTreeMap<u16, usize>>,
    /// 503s without Retry-After, and statuses other than 202/503.
    wrong: Mutex<Vec<String>>,
    /// The longest any request waited for its answer.
    slowest: Mutex<BTreeMap<&'static str, Duration>>,
}

impl Answers {
    fn record(
        &self,
        what: &'static str,
        status: u16,
        retry_after: bool,
        body: &str,
        waited: Duration,
    ) {
        let mut slowest = self.slowest.lock().unwrap();
        let slowest = slowest.entry(what).or_default();
        *slowest = (*slowest).max(waited);
        *self.by_status.lock().unwrap().entry(status).or_default() += 1;
        let fine = status == 202 || (status == 503 && retry_after);
        if !fine {
            self.wrong
                .lock()
                .unwrap()
                .push(format!("{status} (retry-after: {retry_after}) {body}"));
        }
    }

    /// Sends `req`, records its answer as one `what`, and returns its
    /// status (0: no answer).
    async fn send(&self, what: &'static str, req: reqwest::RequestBuilder) -> u16 {
        let started = Instant::now();
        let (status, retry_after, body) = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp.headers().contains_key("retry-after");
                (status, retry_after, resp.text().await.unwrap_or_default())
            }
            Err(_) => (0, false, "no answer".to_string()),
        };
        self.record(what, status, retry_after, &body, started.elapsed());
        status
    }
}

/// What every client shares: where to send, when to stop, what came back.
#[derive(Clone)]
struct Load {
    http: reqwest::Client,
    base: String,
    stop: Arc<AtomicBool>,
    answers: Arc<Answers>,
}

/// Submits md5 tasks of unique inputs until `stop`; the set is of inputs.
async fn task_client(load: Load, client: usize, history: Arc<SetHistory>) {
    let mut n = 0;
    while !load.stop.load(Ordering::Relaxed) {
        let input = format!("fault-{client}-{n}");
        n += 1;
        let req = load
            .http
            .post(format!("{}/hash/md5", load.base))
            .json(&json!({"string": input}));
        let status = load.answers.send("task", req).await;
        if status == 202 {
            history.acknowledged(input);
        } else {
            history.indeterminate(input);
        }
    }
}

/// Posts NDJSON batches of events with unique ids until `stop`.
async fn event_client(load: Load, client: usize, history: Arc<SetHistory>) {
    let mut batch = 0;
    while !load.stop.load(Ordering::Relaxed) {
        let ids: Vec<String> = (0..20).map(|i| format!("e{client}-{batch}-{i}")).collect();
        batch += 1;
        let body: String = ids
            .iter()
            .map(|id| format!("{{\"id\":\"{id}\",\"kind\":\"fault\"}}\n"))
            .collect();
        let req = load
            .http
            .post(format!("{}/write", load.base))
            .header("content-type", "application/x-ndjson")
            .body(body);
        let status = load.answers.send("event batch", req).await;
        for id in ids {
            if status == 202 {
                history.acknowledged(id);
            } else {
                history.indeterminate(id);
            }
        }
    }
}

/// The fault schedule, one step after another, each held for its duration.
const SCHEDULE: &[(&str, Duration)] = &[
    ("clean", Duration::from_secs(2)),
    ("latency 40ms", Duration::from_secs(3)),
    ("bandwidth 32 KiB/s", Duration::from_secs(3)),
    ("reset every connection", Duration::from_secs(2)),
    ("black hole", Duration::from_secs(4)),
    ("reset every connection", Duration::from_secs(2)),
];

fn apply(step: &str, proxies: &[&FaultProxy]) {
    for p in proxies {
        match step {
            "latency 40ms" => p.set(Fault::Latency(Duration::from_millis(40))),
            "bandwidth 32 KiB/s" => p.set(Fault::Bandwidth(32 * 1024)),
            "black hole" => p.set(Fault::BlackHole),
            "reset every connection" => {
                p.set(Fault::None);
                p.reset_all();
            }
            _ => p.set(Fault::None),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_between_weir_and_its_stores_lose_and_duplicate_nothing() {
    let (_db, direct_url) = migrated_database().await;
    let redis = RedisPrefix::create();
    let pg_proxy = FaultProxy::start(url_target(&direct_url)).await;
    let redis_proxy = FaultProxy::start(url_target(&redis.url())).await;
    let url = pg_proxy.url_through(&direct_url);
    let redis_url = redis_proxy.url_through(&redis.url());
    let stream = redis.key("events");
    let ingest = [
        "--ingest-mode",
        "buffered",
        "--redis-url",
        redis_url.as_str(),
        "--ingest-stream",
        stream.as_str(),
    ];
    let node = ["--database-url", url.as_str(), "--no-migrate"];

    let api_args = [&["api", "--listen", "127.0.0.1:0"][..], &node, &ingest].concat();
    let (_api, line) = WeirProcess::start(&api_args, "listening on");
    let base = listening_url(&line);
    let mut workers = Vec::new();
    for id in ["fault-w1", "fault-w2"] {
        let args = [
            &["worker", "--worker-id", id, "--concurrency", "8"][..],
            &["--lease", "2s", "--rescue-interval", "500ms"],
            &["--ingest-claim-idle", "2s"],
            &node,
            &ingest,
        ]
        .concat();
        workers.push(WeirProcess::start(&args, "running up to").0);
    }

    let tasks = Arc::new(SetHistory::default());
    let events = Arc::new(SetHistory::default());
    let load = Load {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        base,
        stop: Arc::new(AtomicBool::new(false)),
        answers: Arc::new(Answers::default()),
    };
    let (stop, answers) = (load.stop.clone(), load.answers.clone());
    let mut clients = Vec::new();
    for c in 0..12 {
        clients.push(tokio::spawn(task_client(load.clone(), c, tasks.clone())));
    }
    for c in 0..3 {
        clients.push(tokio::spawn(event_client(load.clone(), c, events.clone())));
    }

    for (step, hold) in SCHEDULE {
        let before = tasks.acknowledged_count();
        apply(step, &[&pg_proxy, &redis_proxy]);
        tokio::time::sleep(*hold).await;
        let during = tasks.acknowledged_count() - before;
        eprintln!("{step}: {during} tasks acknowledged");
    }
    apply("clean", &[&pg_proxy, &redis_proxy]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    eprintln!(
        "answers {:?}, slowest {:?}; proxies carried {} + {} bytes over {} + {} connections",
        answers.by_status.lock().unwrap(),
        answers.slowest.lock().unwrap(),
        pg_proxy.bytes(),
        redis_proxy.bytes(),
        pg_proxy.connections(),
        redis_proxy.connections()
    );
    let wrong = answers.wrong.lock().unwrap().clone();
    assert!(
        wrong.is_empty(),
        "{} answers neither 202 nor 503 with Retry-After: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(
        tasks.acknowledged_count() > 500,
        "too little load got through"
    );
    // --db-busy-timeout (3 s by default) bounds every answer, even while the
    // database and Redis answer nothing at all: at most once waiting for a
    // batch to take the row, then once for that batch's own store call (a
    // row taken into a batch is answered with its outcome, so a 503 always
    // means "not stored").
    for (what, waited) in answers.slowest.lock().unwrap().iter() {
        assert!(
            *waited < Duration::from_millis(7_000),
            "a {what} waited {waited:?}"
        );
    }

    // Every acknowledged task ends, each exactly once, in one terminal state.
    let pool = sqlx::PgPool::connect(&direct_url).await.unwrap();
    let acknowledged = tasks.acknowledged_ids();
    poll(Duration::from_secs(90), || async {
        let open: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE input->>'string' = ANY($1)")
                .bind(&acknowledged)
                .fetch_one(&pool)
                .await
                .ok()?;
        (open == 0).then_some(())
    })
    .await;
    let rows: Vec<(String, String, i32, Value)> = sqlx::query_as(
        "SELECT input->>'string', state, attempts, errors FROM tasks_finished \
         UNION ALL SELECT input->>'string', state, attempts, errors FROM tasks",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let verdict = tasks.check(rows.iter().map(|r| r.0.clone()));
    eprintln!("tasks: {verdict}");
    assert!(verdict.valid(), "tasks: {verdict}");
    let mut repeated = 0;
    for (input, state, attempts, errors) in &rows {
        assert_eq!(state, "succeeded", "{input}: {state} {errors}");
        let errors = errors.as_array().cloned().unwrap_or_default();
        // md5 never fails: an attempt past the first is a lost lease.
        assert_eq!(errors.len() as i32, attempts - 1, "{input}: {errors:?}");
        for e in &errors {
            let message = e["error"].as_str().unwrap_or_default();
            assert!(message.starts_with("lease expired"), "{input}: {message}");
        }
        repeated += (*attempts - 1) as usize;
    }
    eprintln!("{repeated} repeated executions, each after a lost lease");

    // Every acknowledged event is stored, once.
    let acknowledged_events = events.acknowledged_count();
    assert!(acknowledged_events > 0);
    let stored_events = poll(Duration::from_secs(90), || async {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM events")
            .fetch_all(&pool)
            .await
            .ok()?;
        events.check(ids.clone()).lost.is_empty().then_some(ids)
    })
    .await;
    let verdict = events.check(stored_events);
    eprintln!("events: {verdict}");
    assert!(verdict.valid(), "events: {verdict}");
    pool.close().await;
    for w in workers {
        w.terminate();
    }
}
