//! Private PostgreSQL and Redis servers for a test run.
//!
//! Unless `WEIR_TEST_DATABASE_URL` / `WEIR_TEST_REDIS_URL` name servers to
//! use, the first test that needs one starts its own from the installed
//! binaries (`initdb` + `postgres` into a temp dir; `redis-server` on a free
//! port), once per test process. Each runs under a small shell guard that
//! stops it and removes its files when the test process ends, however it
//! ends. A missing binary stops the suite at once with one line naming the
//! package to install.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The guards of the servers this process started.
static GUARDS: std::sync::Mutex<Vec<std::process::Child>> = std::sync::Mutex::new(Vec::new());

/// How long a private server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The PostgreSQL tests create their databases on.
pub fn postgres_admin_url() -> String {
    if let Ok(url) = std::env::var("WEIR_TEST_DATABASE_URL") {
        return url;
    }
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(start_postgres).clone()
}

/// The Redis tests use.
pub fn redis_url() -> String {
    if let Ok(url) = std::env::var("WEIR_TEST_REDIS_URL") {
        return url;
    }
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(start_redis).clone()
}

/// `name` on PATH, else in one of `dirs` (globs of one `*` level are listed).
fn find_binary(name: &str, dirs: &[&str], package: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut candidates: Vec<PathBuf> = on_path.into_iter().map(|d| d.join(name)).collect();
    for dir in dirs {
        match dir.split_once('*') {
            Some((parent, rest)) => {
                if let Ok(entries) = std::fs::read_dir(parent) {
                    let mut found: Vec<PathBuf> = entries
                        .flatten()
                        .map(|e| e.path().join(rest.trim_start_matches('/')).join(name))
                        .collect();
                    // Newest version first.
                    found.sort();
                    found.reverse();
                    candidates.extend(found);
                }
            }
            None => candidates.push(Path::new(dir).join(name)),
        }
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the tests need `{name}`: install the `{package}` package \
                 (apt-get install {package}), or set the server URL variables"
            )
        })
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// Runs `script` under `sh` (as `user` when given), passing this process's
/// pid as `$1`, and waits for it to print `READY`. The script keeps running
/// (and keeps its server up) until this process is gone.
fn run_guarded(what: &str, script: &str, user: Option<&str>) {
    let mut cmd = match user {
        Some(user) => {
            let mut c = Command::new(find_binary(
                "runuser",
                &["/usr/sbin", "/sbin"],
                "util-linux",
            ));
            c.args(["-u", user, "--", "sh", "-c", script, "guard"]);
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.args(["-c", script, "guard"]);
            c
        }
    };
    let mut child = cmd
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the private {what}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.trim() == "READY" {
                let _ = tx.send(Ok(()));
                return;
            }
            let _ = tx.send(Err(line));
        }
    });
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    let mut said = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(())) => {
                // The guard outlives every test: it ends with this process.
                GUARDS.lock().unwrap_or_else(|e| e.into_inner()).push(child);
                return;
            }
            Ok(Err(line)) => said.push(line),
            Err(_) => panic!(
                "the private {what} did not start within {START_TIMEOUT:?}: {}",
                said.join(" | ")
            ),
        }
    }
}

/// Whether this process runs as root (initdb refuses to).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn start_postgres() -> String {
    let port = start_private_postgres("", "");
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// A private PostgreSQL that takes TLS connections only, with the PEM
/// certificate chain and key given; its port. Connect to `localhost`.
pub fn start_tls_postgres(cert_pem: &str, key_pem: &str) -> u16 {
    let dir = std::env::temp_dir().join(format!(
        "weir-test-pg-tls-{}-{}",
        std::process::id(),
        unique_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("a directory for the certificate");
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&cert, cert_pem).expect("writing the certificate");
    std::fs::write(&key, key_pem).expect("writing the key");
    // The server's own copies: readable by it alone, as it insists.
    let setup = format!(
        r#"cp "{cert}" "{key}" "$dir/data/"
chmod 600 "$dir/data/server.key"
printf 'local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n' >"$dir/data/pg_hba.conf"
"#,
        cert = cert.display(),
        key = key.display()
    );
    start_private_postgres(&setup, "-c ssl=on")
}

/// A pgbouncer in transaction pooling mode in front of the test
/// PostgreSQL (any database, any user, as `postgres`); its port. One per
/// test process, started on first use.
pub fn pgbouncer_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(start_pgbouncer)
}

fn start_pgbouncer() -> u16 {
    let admin = postgres_admin_url();
    let pg_port = admin
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse::<u16>().ok())
        .expect("the test PostgreSQL URL has a port");
    let pgbouncer = find_binary("pgbouncer", &["/usr/sbin"], "pgbouncer");
    let pg_isready = find_binary(
        "pg_isready",
        &["/usr/lib/postgresql/*/bin"],
        "postgresql-client",
    );
    let port = free_port();
    // Debian's pgbouncer is 1.18: no prepared statements in this mode.
    let script = format!(
        r#"set -e
dir=$(mktemp -d "${{TMPDIR:-/tmp}}/weir-test-pgbouncer.XXXXXX")
cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port={pg_port} user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 20
max_client_conn = 2000
ignore_startup_parameters = extra_float_digits
INI
"{pgbouncer}" "$dir/pgbouncer.ini" >"$dir/pgbouncer.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
until "{pg_isready}" -q -h 127.0.0.1 -p {port} -U postgres; do
  kill -0 $pid 2>/dev/null || {{ cat "$dir/pgbouncer.log"; exit 1; }}
  sleep 0.1
done
echo READY
while [ -d "/proc/$1" ]; do sleep 1; done
"#,
        pgbouncer = pgbouncer.display(),
        pg_isready = pg_isready.display(),
    );
    run_guarded("pgbouncer", &script, is_root().then_some("postgres"));
    port
}

/// A number no other call in this process returns.
fn unique_suffix() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Starts a private server (tuned for tests: no fsync — a crashed test
/// server is thrown away —, room for many pools at once) after `setup` ran
/// in its fresh cluster, with `args` added; its port.
fn start_private_postgres(setup: &str, args: &str) -> u16 {
    let dirs = ["/usr/lib/postgresql/*/bin"];
    let initdb = find_binary("initdb", &dirs, "postgresql");
    let postgres = find_binary("postgres", &dirs, "postgresql");
    let pg_isready = find_binary("pg_isready", &dirs, "postgresql-client");
    let port = free_port();
    let script = format!(
        r#"set -e
dir=$(mktemp -d "${{TMPDIR:-/tmp}}/weir-test-pg.XXXXXX")
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
"{initdb}" -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 || {{ cat "$dir/initdb.log"; exit 1; }}
{setup}
"{postgres}" -D "$dir/data" -p {port} -k "$dir" -c listen_addresses=127.0.0.1 \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
  -c max_connections=400 -c shared_buffers=128MB {args} >"$dir/server.log" 2>&1 &
pid=$!
until "{pg_isready}" -q -h "$dir" -p {port} -U postgres; do
  kill -0 $pid 2>/dev/null || {{ cat "$dir/server.log"; exit 1; }}
  sleep 0.1
done
echo READY
while [ -d "/proc/$1" ]; do sleep 1; done
"#,
        initdb = initdb.display(),
        postgres = postgres.display(),
        pg_isready = pg_isready.display(),
    );
    run_guarded("PostgreSQL", &script, is_root().then_some("postgres"));
    port
}

/// A PostgreSQL server of one test's own, which the test can stop and start
/// again (a database restart under load). Its guard stops it when the test
/// process ends.
pub struct RestartablePostgres {
    /// `postgres://…/postgres` on its port.
    pub url: String,
    dir: PathBuf,
}

impl RestartablePostgres {
    pub fn start() -> RestartablePostgres {
        let dirs = ["/usr/lib/postgresql/*/bin"];
        let initdb = find_binary("initdb", &dirs, "postgresql");
        let postgres = find_binary("postgres", &dirs, "postgresql");
        let pg_isready = find_binary("pg_isready", &dirs, "postgresql-client");
        let port = free_port();
        let n = unique_suffix();
        let dir = std::env::temp_dir().join(format!("weir-test-pg-{}-{n}", std::process::id()));
        // The server runs while `$dir/stop` is absent; `$dir/state` says
        // which it is now.
        let script = format!(
            r#"set -e
dir="{dir}"
mkdir -p "$dir"
pid=
trap 'if [ -n "$pid" ]; then kill -INT $pid; wait $pid; fi; rm -rf "$dir"' EXIT
"{initdb}" -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 || {{ cat "$dir/initdb.log"; exit 1; }}
up() {{
  "{postgres}" -D "$dir/data" -p {port} -k "$dir" -c listen_addresses=127.0.0.1     -c fsync=off -c max_connections=200 >>"$dir/server.log" 2>&1 &
  pid=$!
  until "{pg_isready}" -q -h 127.0.0.1 -p {port} -U postgres; do
    kill -0 $pid 2>/dev/null || {{ cat "$dir/server.log"; exit 1; }}
    sleep 0.1
  done
  echo running >"$dir/state"
}}
up
echo READY
while [ -d "/proc/$1" ]; do
  if [ -e "$dir/stop" ] && [ -n "$pid" ]; then
    kill -INT $pid; wait $pid || true; pid=; echo stopped >"$dir/state"
  elif [ ! -e "$dir/stop" ] && [ -z "$pid" ]; then
    up
  fi
  sleep 0.1
done
"#,
            dir = dir.display(),
            initdb = initdb.display(),
            postgres = postgres.display(),
            pg_isready = pg_isready.display(),
        );
        run_guarded("PostgreSQL", &script, is_root().then_some("postgres"));
        RestartablePostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
        }
    }

    /// Stops the server (fast shutdown) and waits until it is down.
    pub fn stop(&self) {
        std::fs::write(self.dir.join("stop"), b"").expect("writing the stop file");
        self.wait_for("stopped");
    }

    /// Starts it again and waits until it takes connections.
    pub fn resume(&self) {
        std::fs::remove_file(self.dir.join("stop")).expect("removing the stop file");
        self.wait_for("running");
    }

    fn wait_for(&self, state: &str) {
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        while std::fs::read_to_string(self.dir.join("state"))
            .unwrap_or_default()
            .trim()
            != state
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the test's PostgreSQL is not {state} after {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn start_redis() -> String {
    let server = find_binary("redis-server", &[], "redis-server");
    let cli = find_binary("redis-cli", &[], "redis-tools");
    let port = free_port();
    let script = format!(
        r#"set -e
"{server}" --port {port} --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --loglevel warning &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
until "{cli}" -p {port} ping 2>/dev/null | grep -q PONG; do
  kill -0 $pid 2>/dev/null || exit 1
  sleep 0.1
done
echo READY
while [ -d "/proc/$1" ]; do sleep 1; done
"#,
        server = server.display(),
        cli = cli.display(),
    );
    run_guarded("Redis", &script, None);
    format!("redis://127.0.0.1:{port}")
}
