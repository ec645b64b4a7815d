//! The migrations this binary carries, embedded by `build.rs` from
//! `migrations/<dialect>/`, and sqlx's migrator over them.
//!
//! The versions, descriptions and checksums are those `sqlx::migrate!` gave
//! (sqlx reads the same file names the same way), so a database it migrated
//! stays current; the test below holds them to sqlx's own reading of the
//! directories.

use std::borrow::Cow;

use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, MigrationType, Migrator};

/// One migration file.
#[derive(Debug)]
pub(crate) struct Embedded {
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// A dialect's embedded migrations as sqlx's migration source.
#[derive(Debug)]
struct Source(&'static [Embedded]);

impl MigrationSource<'static> for Source {
    fn resolve(
        self,
    ) -> futures_util::future::BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        let migrations = self
            .0
            .iter()
            .map(|m| {
                Migration::new(
                    m.version,
                    Cow::Borrowed(m.description),
                    MigrationType::Simple,
                    Cow::Borrowed(m.sql),
                    // sqlx's own marker for a migration run outside a transaction.
                    m.sql.starts_with("-- no-transaction"),
                )
            })
            .collect();
        Box::pin(std::future::ready(Ok(migrations)))
    }
}

/// sqlx's migrator over `files` (`POSTGRES` or `SQLITE`).
pub(crate) async fn migrator(files: &'static [Embedded]) -> Result<Migrator, MigrateError> {
    Migrator::new(Source(files)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[tokio::test]
    async fn the_embedded_migrations_are_sqlx_s_reading_of_the_files() {
        for (dialect, files) in [("postgres", POSTGRES), ("sqlite", SQLITE)] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dialect);
            let from_files = Migrator::new(dir.as_path()).await.unwrap();
            let embedded = migrator(files).await.unwrap();
            let key = |m: &Migration| {
                (
                    m.version,
                    m.description.to_string(),
                    m.checksum.to_vec(),
                    m.no_tx,
                )
            };
            let from_files: Vec<_> = from_files.iter().map(key).collect();
            let embedded: Vec<_> = embedded.iter().map(key).collect();
            assert!(embedded.len() >= 18, "{dialect}: {}", embedded.len());
            assert_eq!(embedded, from_files, "{dialect}");
        }
    }
}
