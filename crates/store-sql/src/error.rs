//! Driver errors → [`StoreError`].

use weir_core::StoreError;

/// Maps an sqlx error: connection trouble and lock contention are `Unavailable`
/// (retryable, shown to clients as 503); everything else is `Internal`.
/// `is_contention` tells, from a backend's error code, which database errors
/// mean "busy or gone" rather than "wrong".
pub fn from_sqlx(err: sqlx::Error, is_contention: fn(&str) -> bool) -> StoreError {
    match &err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
        sqlx::Error::Database(db) if db.code().as_deref().is_some_and(is_contention) => {
            StoreError::Unavailable(err.to_string())
        }
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(err.to_string())
        }
        _ => StoreError::Internal(err.to_string()),
    }
}

/// SQLite's BUSY and LOCKED, with their extended codes (e.g. 517, BUSY_SNAPSHOT).
pub fn sqlite_contention(code: &str) -> bool {
    code.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
}

/// PostgreSQL's "busy or gone" SQLSTATEs: connection exceptions (class 08),
/// too many connections and other resource limits (53xxx), the server shutting
/// down or starting (57P01-57P03), and lock/serialization conflicts.
pub fn postgres_contention(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "55P03"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_contention_codes() {
        assert!(sqlite_contention("5"));
        assert!(sqlite_contention("6"));
        assert!(sqlite_contention("517"));
        assert!(!sqlite_contention("19"));
        assert!(!sqlite_contention("2067"));
    }

    #[test]
    fn postgres_contention_codes() {
        assert!(postgres_contention("53300"));
        assert!(postgres_contention("57P01"));
        assert!(postgres_contention("08006"));
        assert!(!postgres_contention("23505"));
        assert!(!postgres_contention("42P01"));
    }
}
