//! Test harness shared by weir's test suites.
//!
//! [`PgDatabase`] gives each test its own PostgreSQL database, created on the
//! server named by `WEIR_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped when the guard
//! goes out of scope — even when the test fails. Leftovers from killed runs
//! are dropped by the next run once they are an hour old.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

/// The server tests use unless `WEIR_TEST_DATABASE_URL` names another.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Every test database's name starts with this.
const PREFIX: &str = "weir_test_";

/// The admin URL tests create their databases through.
pub fn admin_url() -> String {
    std::env::var("WEIR_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.into())
}

/// A database of one's own, dropped on drop.
pub struct PgDatabase {
    name: String,
    url: String,
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
        PgDatabase { name, url }
    }

    /// The database's connection URL.
    pub fn url(&self) -> &str {
        &self.url
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
             (run scripts/ensure-services.sh, or point WEIR_TEST_DATABASE_URL at a server)"
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
        }
    }
}
