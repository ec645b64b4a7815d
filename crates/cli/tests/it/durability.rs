//! Settings under which an acknowledged write could be lost are named at
//! start: PostgreSQL's `fsync`, `synchronous_commit` and `full_page_writes`
//! (the suite's own server runs with all three off, for speed), and which
//! SQLite synchronous mode `weir up` runs with.

use std::time::Duration;

use crate::processes::{migrated_database, WeirProcess};

/// The PostgreSQL settings of the test server that may lose a commit.
async fn unsafe_settings(url: &str) -> Vec<String> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings \
         WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes') AND setting = 'off'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.into_iter().map(|(n, v)| format!("{n}={v}")).collect()
}

/// `weir api` on `db` with buffered ingest through `redis` (`stream`: the
/// default when `None`), and `extra` flags.
fn buffered_api<'a>(
    db: &'a str,
    redis: &'a str,
    stream: Option<&'a str>,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "api",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        db,
        "--no-migrate",
        "--ingest-mode",
        "buffered",
        "--redis-url",
        redis,
    ];
    if let Some(stream) = stream {
        args.extend(["--ingest-stream", stream]);
    }
    args.extend(extra);
    args
}

/// The first log line containing `marker` within `within`, if any.
fn log_line(p: &WeirProcess, marker: &str, within: Duration) -> Option<String> {
    let logs = p.logs.as_ref().unwrap();
    let until = std::time::Instant::now() + within;
    while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
        match logs.recv_timeout(left) {
            Ok(line) if line.contains(marker) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_nodes_and_workers_name_postgres_settings_that_may_lose_commits() {
    let (_db, url) = migrated_database().await;
    let expected = unsafe_settings(&url).await;
    let node = ["--database-url", url.as_str(), "--no-migrate"];
    let (api, _) = WeirProcess::start_logging(
        &[&["api", "--listen", "127.0.0.1:0"][..], &node[..]].concat(),
        "warn",
        "listening on",
    );
    let (worker, _) = WeirProcess::start_logging(
        &[&["worker"][..], &node[..]].concat(),
        "warn",
        "running up to",
    );
    for p in [&api, &worker] {
        let line = log_line(p, "PostgreSQL runs with", Duration::from_secs(5));
        if expected.is_empty() {
            assert_eq!(line, None, "a warning for a safe server");
            continue;
        }
        let line = line.expect("no warning naming the unsafe settings");
        for setting in &expected {
            assert!(
                line.contains(setting.as_str()),
                "{setting} not named: {line}"
            );
        }
    }
    api.terminate();
    worker.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_up_says_which_sqlite_synchronous_mode_is_in_force() {
    for (flag, promise) in [
        (None, "synchronous=full"),
        (
            Some("normal"),
            "synchronous=normal: acknowledged writes survive a process crash, not a power loss",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        let mut args = vec!["up", "--listen", "127.0.0.1:0", "--data-dir", &data];
        if let Some(mode) = flag {
            args.extend(["--sqlite-synchronous", mode]);
        }
        let (mut up, _) = WeirProcess::start(&args, "weir up: store");
        let line = up.wait_line("synchronous=");
        assert!(line.contains(promise), "{line}");
        // SIGTERM is handled once weir says it is ready.
        up.wait_line("ready");
        up.terminate();
    }
    let bad = crate::processes::run_weir(&["up", "--sqlite-synchronous", "sometimes"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--sqlite-synchronous"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_ingest_names_what_redis_persistence_gives_up() {
    let (_db, url) = migrated_database().await;
    let redis = weir_testkit::RedisPrefix::create();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let appendonly: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut conn)
        .await
        .unwrap();
    // The suite's Redis keeps nothing on disk: the warning must say so.
    assert_eq!(appendonly[1], "no");
    let (redis_url, stream) = (redis.url(), redis.key("events"));
    let args = buffered_api(&url, &redis_url, Some(&stream), &[]);
    let (api, _) = WeirProcess::start_logging(&args, "warn", "listening on");
    let line = log_line(&api, "Redis runs with", Duration::from_secs(5))
        .expect("no warning about Redis's persistence");
    assert!(line.contains("appendonly no"), "{line}");
    assert!(line.contains("lost when Redis restarts"), "{line}");
    api.terminate();
}

/// `--ingest-wait-aof` needs WAITAOF (Redis 7.2+) and an append-only file:
/// without them an API node stops at start with one line naming the flag
/// (the suite's Redis keeps no AOF; this machine's is 7.0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_the_aof_without_one_stops_at_start_naming_the_flag() {
    let (_db, url) = migrated_database().await;
    let redis = weir_testkit::RedisPrefix::create();
    let (redis_url, stream) = (redis.url(), redis.key("events"));
    let args = buffered_api(&url, &redis_url, Some(&stream), &["--ingest-wait-aof"]);
    let out = crate::processes::run_weir(&args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("--ingest-wait-aof"))
        .unwrap_or_else(|| panic!("no line names the flag: {err}"));
    assert!(
        line.contains("Redis 7.2 or later") || line.contains("appendonly yes"),
        "{line}"
    );
}

/// A Valkey server (Redis 7.2's protocol, WAITAOF included) of the test's
/// own, with an append-only file synced every second; killed on drop.
struct Valkey {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Valkey {
    fn start() -> Valkey {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("valkey-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("valkey-server (scripts/ensure-test-packages.sh installs it)");
        Valkey {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Valkey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With an append-only file and WAITAOF, an API node waits for each batch's
/// sync before its 202: the server counts one WAITAOF per batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_the_aof_answers_after_valkey_synced_each_batch() {
    let (_db, url) = migrated_database().await;
    let valkey = Valkey::start();
    let client = redis::Client::open(valkey.url()).unwrap();
    let mut conn = crate::support::poll(Duration::from_secs(20), || async {
        client.get_multiplexed_async_connection().await.ok()
    })
    .await;
    let redis_url = valkey.url();
    let args = buffered_api(&url, &redis_url, None, &["--ingest-wait-aof"]);
    let (api, line) = WeirProcess::start(&args, "listening on");
    let base = crate::processes::listening_url(&line);
    let http = reqwest::Client::new();
    for batch in 0..5 {
        let resp = http
            .post(format!("{base}/write"))
            .header("content-type", "application/x-ndjson")
            .body(format!("{{\"id\":\"aof-{batch}\"}}\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let calls = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_waitaof:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert_eq!(calls, 5, "{stats}");
    let pending: u64 = redis::cmd("XLEN")
        .arg(weir_ingest::DEFAULT_STREAM)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        pending, 5,
        "every batch in the stream (no worker drains it)"
    );
    api.terminate();
}
