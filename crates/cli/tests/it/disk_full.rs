//! A full disk costs nothing acknowledged: `weir up` (SQLite) with its data
//! directory on a 6 MB tmpfs — and an API node and a worker on PostgreSQL
//! with the database in a tablespace on a tmpfs —, four clients submitting
//! 60 KB tasks and event batches until the disk is full. Every 202 is stored, every refusal is a
//! 507 `disk_full` (never a 202 for a row not stored, never a 500), and what
//! was refused is not stored. Once the disk grows, submissions are accepted
//! again and the workers finish every acknowledged task, without a restart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use weir_testkit::set_check::SetHistory;
use weir_testkit::small_disk::SmallDisk;

use weir_testkit::PgDatabase;

use crate::binary::start_up;
use crate::processes::{run_weir, start_api_and_worker};
use crate::support::poll;

/// 60 KB of hex that compresses little (PostgreSQL compresses large values).
fn padding() -> String {
    hex::encode(
        (0..30_000)
            .map(|_| rand::random::<u8>())
            .collect::<Vec<_>>(),
    )
}

/// What the clients were answered.
#[derive(Default)]
struct Answers {
    by_status: Mutex<BTreeMap<u16, usize>>,
    /// Answers other than 202, 507 `disk_full`, or 503 with Retry-After.
    wrong: Mutex<Vec<String>>,
    full: AtomicUsize,
}

#[derive(Clone)]
struct Load {
    http: reqwest::Client,
    base: String,
    stop: Arc<AtomicBool>,
    answers: Arc<Answers>,
    tasks: Arc<SetHistory>,
    events: Arc<SetHistory>,
}

impl Load {
    /// Sends `req`; records every element of `ids` by how it was answered.
    /// A 507 says nothing was stored: its elements are recorded nowhere, so
    /// the set checker finds them if they were stored after all.
    async fn send(&self, req: reqwest::RequestBuilder, history: &SetHistory, ids: &[String]) {
        let (status, retry_after, body) = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp.headers().contains_key("retry-after");
                (status, retry_after, resp.text().await.unwrap_or_default())
            }
            Err(_) => (0, false, String::new()),
        };
        *self
            .answers
            .by_status
            .lock()
            .unwrap()
            .entry(status)
            .or_default() += 1;
        let code = serde_json::from_str::<Value>(&body).unwrap_or_default()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match status {
            202 => ids.iter().for_each(|id| history.acknowledged(id.clone())),
            507 if code == "disk_full" && retry_after => {
                self.answers.full.fetch_add(1, Ordering::Relaxed);
            }
            503 if retry_after => ids.iter().for_each(|id| history.indeterminate(id.clone())),
            _ => {
                ids.iter().for_each(|id| history.indeterminate(id.clone()));
                self.answers
                    .wrong
                    .lock()
                    .unwrap()
                    .push(format!("{status} (retry-after {retry_after}): {body}"));
            }
        }
    }

    async fn submit_task(&self, key: &str) {
        let req = self
            .http
            .post(format!("{}/hash/md5", self.base))
            .json(&json!({"string": format!("{key}:{}", padding())}));
        self.send(req, &self.tasks, &[key.to_string()]).await;
    }

    async fn submit_events(&self, prefix: &str) {
        let ids: Vec<String> = (0..10).map(|i| format!("{prefix}-{i}")).collect();
        let body: String = ids
            .iter()
            .map(|id| format!("{{\"id\":\"{id}\",\"pad\":\"{}\"}}\n", "y".repeat(2_000)))
            .collect();
        let req = self
            .http
            .post(format!("{}/write", self.base))
            .header("content-type", "application/x-ndjson")
            .body(body);
        self.send(req, &self.events, &ids).await;
    }
}

async fn client(load: Load, c: usize) {
    let mut n = 0;
    while !load.stop.load(Ordering::Relaxed) {
        load.submit_task(&format!("t{c}-{n}")).await;
        load.submit_events(&format!("e{c}-{n}")).await;
        n += 1;
    }
}

/// Where the test's weir keeps its data, read directly.
enum Db {
    Sqlite(String),
    /// Connected before the disk fills: a new PostgreSQL session must
    /// write its relation cache file, which a full disk refuses.
    Postgres(sqlx::PgPool),
}

impl Db {
    async fn query<T>(&self, sqlite: &str, postgres: &str) -> Vec<T>
    where
        T: Send + Unpin,
        for<'r> (T,):
            sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        match self {
            Db::Sqlite(url) => {
                let pool = sqlx::SqlitePool::connect(url).await.unwrap();
                let rows: Vec<(T,)> = sqlx::query_as(sqlite).fetch_all(&pool).await.unwrap();
                pool.close().await;
                rows.into_iter().map(|r| r.0).collect()
            }
            Db::Postgres(pool) => {
                let rows: Vec<(T,)> = sqlx::query_as(postgres).fetch_all(pool).await.unwrap();
                rows.into_iter().map(|r| r.0).collect()
            }
        }
    }

    /// Task keys (the part of the md5 input before `:`) and event ids stored.
    async fn stored(&self) -> (Vec<String>, Vec<String>) {
        let inputs: Vec<String> = self
            .query(
                "SELECT json_extract(input, '$.string') FROM tasks",
                "SELECT input->>'string' FROM tasks \
                 UNION ALL SELECT input->>'string' FROM tasks_finished",
            )
            .await;
        let keys = inputs
            .iter()
            .map(|s| s.split(':').next().unwrap_or_default().to_string())
            .collect();
        let events = self
            .query("SELECT id FROM events", "SELECT id FROM events")
            .await;
        (keys, events)
    }

    /// Stored tasks not (yet) succeeded.
    async fn unfinished(&self) -> i64 {
        let counts: Vec<i64> = self
            .query(
                "SELECT count(*) FROM tasks WHERE state <> 'succeeded'",
                "SELECT (SELECT count(*) FROM tasks WHERE state <> 'succeeded') \
                      + (SELECT count(*) FROM tasks_finished WHERE state <> 'succeeded')",
            )
            .await;
        counts[0]
    }
}

/// Four clients fill the disk through `base`; then the disk grows. Every
/// answer is 202, 507 `disk_full` or 503 with Retry-After; the stores hold
/// exactly what was acknowledged (and maybe what was indeterminate), then
/// accept again, and every stored task succeeds.
async fn fill_then_grow(base: String, disk: &SmallDisk, grown: &str, db: &Db) {
    let load = Load {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        base,
        stop: Arc::new(AtomicBool::new(false)),
        answers: Arc::default(),
        tasks: Arc::default(),
        events: Arc::default(),
    };
    let clients: Vec<_> = (0..4)
        .map(|c| tokio::spawn(client(load.clone(), c)))
        .collect();
    poll(Duration::from_secs(120), || async {
        (load.answers.full.load(Ordering::Relaxed) >= 40).then_some(())
    })
    .await;
    load.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let statuses = load.answers.by_status.lock().unwrap().clone();
    eprintln!("answers while the disk filled: {statuses:?}");
    let wrong = load.answers.wrong.lock().unwrap().clone();
    assert!(
        wrong.is_empty(),
        "{} wrong answers: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(load.tasks.acknowledged_count() > 0, "{statuses:?}");
    let (task_keys, event_ids) = db.stored().await;
    let verdict = load.tasks.check(task_keys);
    assert!(verdict.valid(), "tasks: {verdict}");
    let verdict = load.events.check(event_ids);
    assert!(verdict.valid(), "events: {verdict}");

    // Space freed: accepted again, without a restart, and every stored
    // task is worked.
    disk.resize(grown);
    poll(Duration::from_secs(30), || async {
        let before = load.tasks.acknowledged_count();
        load.submit_task("after-0").await;
        (load.tasks.acknowledged_count() > before).then_some(())
    })
    .await;
    load.submit_events("after-events").await;
    let wrong = load.answers.wrong.lock().unwrap().clone();
    assert!(wrong.is_empty(), "after the disk grew: {wrong:?}");
    poll(Duration::from_secs(90), || async {
        (db.unfinished().await == 0).then_some(())
    })
    .await;
    let (task_keys, event_ids) = db.stored().await;
    assert!(load.tasks.check(task_keys).valid());
    assert!(load.events.check(event_ids).valid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_507_loses_nothing_acknowledged_and_recovers() {
    let disk = SmallDisk::mount("6m");
    let (up, base) = start_up(disk.path());
    let db = Db::Sqlite(format!(
        "sqlite://{}?mode=ro",
        disk.path().join("weir.db").display()
    ));
    fill_then_grow(base, &disk, "64m", &db).await;
    up.terminate();
}

/// The same on PostgreSQL: the test database lives in a tablespace on a
/// small tmpfs (the suite's own server runs on this machine), so a full
/// disk is SQLSTATE 53100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_postgres_disk_refuses_with_507_loses_nothing_acknowledged_and_recovers() {
    let disk = SmallDisk::mount("24m");
    let chowned = std::process::Command::new("chown")
        .args(["postgres:postgres"])
        .arg(disk.path())
        .status()
        .unwrap();
    assert!(chowned.success());
    let pg = PgDatabase::create().await;
    let space = format!("weir_small_{}", pg.name());
    let mut admin = pg.admin().await;
    sqlx::query(&format!(
        "CREATE TABLESPACE {space} LOCATION '{}'",
        disk.path().display()
    ))
    .execute(&mut admin)
    .await
    .unwrap_or_else(|e| panic!("a tablespace on a local tmpfs (the suite's own server): {e}"));
    sqlx::query(&format!(
        "ALTER DATABASE {} SET TABLESPACE {space}",
        pg.name()
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let url = pg.url().to_string();
    let migrated = run_weir(&["migrate", "--database-url", &url]);
    assert!(migrated.status.success(), "{migrated:?}");
    let (api, worker, base) = start_api_and_worker(&url);
    let reader = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .test_before_acquire(false)
        .connect(&url)
        .await
        .unwrap();
    let db = Db::Postgres(reader);
    db.stored().await;
    fill_then_grow(base, &disk, "128m", &db).await;
    api.terminate();
    worker.terminate();
    if let Db::Postgres(reader) = db {
        reader.close().await;
    }
    drop(pg);
    let _ = sqlx::query(&format!("DROP TABLESPACE {space}"))
        .execute(&mut admin)
        .await;
}
