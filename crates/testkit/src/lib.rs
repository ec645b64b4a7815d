//! Test harness shared by weir's test suites.
//!
//! [`PgDatabase`] gives each test its own PostgreSQL database, dropped when
//! the guard goes out of scope — even when the test fails; [`RedisPrefix`]
//! gives each its own key prefix. Both live on private servers the run starts
//! itself ([`services`]), or on the servers `WEIR_TEST_DATABASE_URL` and
//! `WEIR_TEST_REDIS_URL` name. Leftover databases from killed runs on a
//! shared server are dropped by the next run once they are an hour old.
//! [`fault_proxy`] puts network faults between weir and those servers;
//! [`set_check`] checks what a run stored against what it acknowledged;
//! [`heap`] counts what idle connections cost a server's heap;
//! [`small_disk`] is a tmpfs to fill up; [`lazy_fs`], a disk that loses
//! power.

pub mod fault_proxy;
pub mod heap;
pub mod lazy_fs;
pub mod services;
pub mod set_check;
pub mod small_disk;

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

/// Every test database's name starts with this.
const PREFIX: &str = "weir_test_";

/// The admin URL tests create their databases through.
pub fn admin_url() -> String {
    services::postgres_admin_url()
}

/// A database of one's own, dropped on drop.
pub struct PgDatabase {
    name: String,
    url: String,
    /// A login role that owns the database, when one was made.
    owner: Option<String>,
    /// Roles made by [`PgDatabase::least_privilege_roles`].
    roles: Vec<String>,
}

impl PgDatabase {
    /// Creates a fresh, empty database.
    pub async fn create() -> PgDatabase {
        let admin = admin_url();
        let mut conn = connect(&admin).await;
        drop_stale(&mut conn).await;
        // Time-ordered, so stale ones are found by name.
        let name = format!("{PREFIX}{}", uuid::Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("creating test database {name} on {admin}: {e}"));
        let _ = conn.close().await;
        let url = PgConnectOptions::from_str(&admin)
            .unwrap_or_else(|e| panic!("bad WEIR_TEST_DATABASE_URL {admin:?}: {e}"))
            .database(&name)
            .to_url_lossy()
            .to_string();
        PgDatabase {
            name,
            url,
            owner: None,
            roles: Vec::new(),
        }
    }

    /// Makes this database's schema owner and app roles with
    /// `deploy/postgres/roles.sql` (the file deployments run) and returns
    /// their URLs: (owner, app). The app role may read and write rows only.
    pub fn least_privilege_roles(&mut self) -> (String, String) {
        let (owner, app) = (format!("{}_owner", self.name), format!("{}_app", self.name));
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/postgres/roles.sql"
        );
        let out = std::process::Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &admin_url()])
            .args(["-v", &format!("owner={owner}"), "-v", &format!("app={app}")])
            .args([
                "-v",
                "owner_password=owner-secret",
                "-v",
                "app_password=app-secret",
            ])
            .args(["-v", &format!("db={}", self.name), "-f", script])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "roles.sql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.roles = vec![app.clone(), owner.clone()];
        let as_role = |role: &str, password: &str| {
            PgConnectOptions::from_str(&self.url)
                .expect("the test database URL parses")
                .username(role)
                .password(password)
                .to_url_lossy()
                .to_string()
        };
        (as_role(&owner, "owner-secret"), as_role(&app, "app-secret"))
    }

    /// Makes a login role with `CONNECTION LIMIT limit` that owns this database
    /// (so it can migrate it) and returns a URL that connects as it. Tests use
    /// it to make the server refuse connections; see [`PgDatabase::admin`].
    pub async fn owner_role_url(&mut self, limit: i32) -> String {
        let role = format!("{}_owner", self.name);
        let mut conn = connect(&admin_url()).await;
        for sql in [
            format!("CREATE ROLE {role} LOGIN CONNECTION LIMIT {limit}"),
            format!("ALTER DATABASE {} OWNER TO {role}", self.name),
        ] {
            sqlx::query(&sql)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let _ = conn.close().await;
        self.owner = Some(role.clone());
        PgConnectOptions::from_str(&self.url)
            .expect("the test database URL parses")
            .username(&role)
            .to_url_lossy()
            .to_string()
    }

    /// The owner role's name, if one was made.
    pub fn owner_role(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// A connection to the server as the admin, to change limits or end
    /// sessions while a test runs.
    pub async fn admin(&self) -> PgConnection {
        connect(&admin_url()).await
    }

    /// Ends every session on this database (as a server restart would), except
    /// the caller's own.
    pub async fn terminate_sessions(&self) -> u64 {
        let mut conn = self.admin().await;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()) t",
        )
        .bind(&self.name)
        .fetch_one(&mut conn)
        .await
        .expect("terminating sessions");
        let _ = conn.close().await;
        n as u64
    }

    /// The database's connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same database through the test pgbouncer (transaction pooling).
    pub fn pooled_url(&self) -> String {
        PgConnectOptions::from_str(&self.url)
            .expect("the test database URL parses")
            .port(services::pgbouncer_port())
            .to_url_lossy()
            .to_string()
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop runs outside async; a short-lived runtime on its own thread
        // works whether or not the test's runtime is still alive.
        let name = self.name.clone();
        let owner = self.owner.clone();
        let roles = std::mem::take(&mut self.roles);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for dropping the test database");
            rt.block_on(async move {
                let mut conn = connect(&admin_url()).await;
                let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
                if let Err(e) = dropped {
                    eprintln!("could not drop test database {name}: {e}");
                }
                for role in owner.into_iter().chain(roles) {
                    let _ = sqlx::query(&format!("DROP ROLE IF EXISTS {role}"))
                        .execute(&mut conn)
                        .await;
                }
                let _ = conn.close().await;
            });
        })
        .join();
    }
}

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach the test PostgreSQL at {url}: {e}\n\
             (is WEIR_TEST_DATABASE_URL right?)"
        )
    })
}

/// Drops test databases left by runs that were killed before their guards ran.
async fn drop_stale(conn: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'weir\\_test\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    let cutoff = uuid::Uuid::now_v7();
    let hour_ms = 3_600_000u64;
    for name in names {
        let Ok(id) = uuid::Uuid::parse_str(&name[PREFIX.len()..]) else {
            continue;
        };
        let (Some(made), Some(now)) = (id.get_timestamp(), cutoff.get_timestamp()) else {
            continue;
        };
        let (made_s, made_ns) = made.to_unix();
        let (now_s, now_ns) = now.to_unix();
        let age_ms = (now_s * 1000 + u64::from(now_ns) / 1_000_000)
            .saturating_sub(made_s * 1000 + u64::from(made_ns) / 1_000_000);
        if age_ms > hour_ms {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut *conn)
                .await;
            for role in ["owner", "app"] {
                let _ = sqlx::query(&format!("DROP ROLE IF EXISTS {name}_{role}"))
                    .execute(&mut *conn)
                    .await;
            }
        }
    }
}

pub use services::{pgbouncer_port, redis_url, start_tls_postgres, RestartablePostgres};

/// A key prefix of one's own on the test Redis; every key under it is
/// deleted on drop, even when the test fails. The server may hold other
/// runs' keys: tests only ever touch keys under their prefix.
pub struct RedisPrefix {
    prefix: String,
}

impl RedisPrefix {
    pub fn create() -> RedisPrefix {
        let prefix = format!("weir-test:{}:", uuid::Uuid::now_v7().simple());
        // Fail early, with a hint, when Redis is not there.
        let client = redis::Client::open(redis_url()).expect("a valid WEIR_TEST_REDIS_URL");
        if let Err(e) = client.get_connection() {
            panic!(
                "cannot reach the test Redis at {}: {e}\n\
                 (is WEIR_TEST_REDIS_URL right?)",
                redis_url()
            );
        }
        RedisPrefix { prefix }
    }

    /// `name` under this prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        redis_url()
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(redis_url()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let pattern = format!("{}*", self.prefix);
        let keys: Vec<String> = match redis::cmd("KEYS").arg(&pattern).query(&mut conn) {
            Ok(keys) => keys,
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query(&mut conn);
        }
    }
}

/// Calls `check` until it returns `Some`, or panics after `deadline`. Waits
/// between calls grow from 5 ms to 100 ms: quick when the condition is near,
/// cheap when it is not.
pub async fn poll<T, F, Fut>(deadline: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(100));
    }
}
