//! Driver errors → [`StoreError`].

use weir_core::StoreError;

/// What a database error code says about the error, per dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Busy or gone: the same call may succeed shortly.
    Contention,
    /// The disk under the database is full: nothing was written.
    DiskFull,
    /// Anything else: a bug, a constraint, a broken database.
    Other,
}

/// Maps an sqlx error: connection trouble and lock contention are `Unavailable`
/// (retryable, shown to clients as 503), a full disk is `DiskFull` (507);
/// everything else is `Internal`. `cause` tells, from a backend's error code,
/// which kind a database error is.
pub fn from_sqlx(err: sqlx::Error, cause: fn(&str) -> Cause) -> StoreError {
    match &err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
        sqlx::Error::Database(db) => match db.code().as_deref().map(cause) {
            Some(Cause::Contention) => StoreError::Unavailable(err.to_string()),
            Some(Cause::DiskFull) => StoreError::DiskFull(err.to_string()),
            _ => StoreError::Internal(err.to_string()),
        },
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(err.to_string())
        }
        _ => StoreError::Internal(err.to_string()),
    }
}

/// SQLite's BUSY and LOCKED, with their extended codes (e.g. 517,
/// BUSY_SNAPSHOT), and FULL (the file system refused to grow a file).
pub fn sqlite_cause(code: &str) -> Cause {
    match code.parse::<i32>().map(|n| n & 0xff) {
        Ok(5 | 6) => Cause::Contention,
        Ok(13) => Cause::DiskFull,
        _ => Cause::Other,
    }
}

/// PostgreSQL's SQLSTATEs: disk full (53100) apart; the other "busy or gone"
/// ones are connection exceptions (class 08), too many connections and other
/// resource limits (53xxx), the server shutting down or starting
/// (57P01-57P03), and lock/serialization conflicts.
pub fn postgres_cause(code: &str) -> Cause {
    if code == "53100" {
        Cause::DiskFull
    } else if code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "55P03"
        )
    {
        Cause::Contention
    } else {
        Cause::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_codes() {
        assert_eq!(sqlite_cause("5"), Cause::Contention);
        assert_eq!(sqlite_cause("6"), Cause::Contention);
        assert_eq!(sqlite_cause("517"), Cause::Contention);
        assert_eq!(sqlite_cause("13"), Cause::DiskFull);
        assert_eq!(sqlite_cause("19"), Cause::Other);
        assert_eq!(sqlite_cause("2067"), Cause::Other);
    }

    #[test]
    fn postgres_codes() {
        assert_eq!(postgres_cause("53300"), Cause::Contention);
        assert_eq!(postgres_cause("53100"), Cause::DiskFull);
        assert_eq!(postgres_cause("57P01"), Cause::Contention);
        assert_eq!(postgres_cause("08006"), Cause::Contention);
        assert_eq!(postgres_cause("23505"), Cause::Other);
        assert_eq!(postgres_cause("42P01"), Cause::Other);
    }
}
