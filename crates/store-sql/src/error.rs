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
/// everything else is `Internal`. `cause` tells, from a backend's error code
/// and message, which kind a database error is.
pub fn from_sqlx(err: sqlx::Error, cause: fn(&str, &str) -> Cause) -> StoreError {
    match &err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
        sqlx::Error::Database(db) => match db.code().map(|code| cause(&code, db.message())) {
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
pub fn sqlite_cause(code: &str, _message: &str) -> Cause {
    match code.parse::<i32>().map(|n| n & 0xff) {
        Ok(5 | 6) => Cause::Contention,
        Ok(13) => Cause::DiskFull,
        _ => Cause::Other,
    }
}

/// PostgreSQL's SQLSTATEs: disk full (53100, and the internal error a new
/// session gets when it cannot write its relation cache file) apart; the
/// other "busy or gone" ones are connection exceptions (class 08), too many
/// connections and other resource limits (53xxx), the server shutting down
/// or starting (57P01-57P03), and lock/serialization conflicts.
pub fn postgres_cause(code: &str, message: &str) -> Cause {
    if code == "53100" || (code == "XX000" && message.contains("could not write init file")) {
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
        for (code, cause) in [
            ("5", Cause::Contention),
            ("6", Cause::Contention),
            ("517", Cause::Contention),
            ("13", Cause::DiskFull),
            ("19", Cause::Other),
            ("2067", Cause::Other),
        ] {
            assert_eq!(sqlite_cause(code, ""), cause, "{code}");
        }
    }

    #[test]
    fn postgres_codes() {
        for (code, cause) in [
            ("53300", Cause::Contention),
            ("53100", Cause::DiskFull),
            ("57P01", Cause::Contention),
            ("08006", Cause::Contention),
            ("23505", Cause::Other),
            ("42P01", Cause::Other),
            ("XX000", Cause::Other),
        ] {
            assert_eq!(postgres_cause(code, "some message"), cause, "{code}");
        }
        // A new session on a full disk cannot write its relation cache file.
        assert_eq!(
            postgres_cause("XX000", "could not write init file"),
            Cause::DiskFull
        );
    }
}
