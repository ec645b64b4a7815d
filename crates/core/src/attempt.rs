//! What an attempt's end makes of its task, decided once for every runner:
//! a worker running a built-in, `http`, `command` or Rust handler, and an
//! external worker reporting over HTTP.
//!
//! - a result → succeeded, and cached where the type caches;
//! - a retryable failure or a timeout → queued again after the backoff (the
//!   task's own, else its type's, else the runner's default; a delay the
//!   handler asked for wins, capped by the backoff's cap), or dead once the
//!   attempts are spent;
//! - a permanent failure → dead.
//!
//! The rescuer applies the same rule to an attempt whose lease lapsed
//! (queued again while attempts are left, else dead), in the one statement
//! that finds such tasks (`rescue_expired.sql` per dialect).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{RetryPolicy, TaskOutcome, TaskType, TaskTypes};

/// How an attempt ended, as its runner saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptEnd {
    /// The handler returned a result.
    Succeeded(Value),
    /// The handler failed; `permanent`: the input will never work.
    Failed {
        error: String,
        permanent: bool,
        /// A delay the handler asked for (e.g. a `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The attempt ran past its time limit.
    TimedOut(Duration),
}

/// The attempt that ended: which task, which try.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    pub kind: &'a TaskType,
    pub input: &'a Value,
    /// This attempt's number, from 1.
    pub attempt: i32,
    pub max_attempts: i32,
    /// The task's own backoff, if its submission gave one.
    pub backoff: Option<RetryPolicy>,
    /// Its tenant, whose own the cached result is.
    pub tenant: Option<&'a str>,
}

/// The runner's defaults the outcome falls back on.
#[derive(Clone, Copy, Debug)]
pub struct AttemptDefaults {
    /// Backoff when neither the task nor its type has one.
    pub retry: RetryPolicy,
    /// How long a cached result lives.
    pub cache_ttl: Duration,
}

impl TaskTypes {
    /// The outcome to record for `attempt`, which ended as `end` at `now`.
    /// `unit_sample` in [0, 1) draws the backoff's jitter.
    pub fn attempt_outcome(
        &self,
        attempt: &Attempt<'_>,
        end: AttemptEnd,
        defaults: &AttemptDefaults,
        now: DateTime<Utc>,
        unit_sample: f64,
    ) -> TaskOutcome {
        let (error, permanent, asked) = match end {
            AttemptEnd::Succeeded(result) => {
                let cache = self.cache_write(
                    attempt.kind,
                    attempt.input,
                    attempt.tenant,
                    now,
                    defaults.cache_ttl,
                );
                return TaskOutcome::Succeeded { result, cache };
            }
            AttemptEnd::Failed {
                error,
                permanent,
                retry_after,
            } => (error, permanent, retry_after),
            AttemptEnd::TimedOut(after) => (
                format!("timed out after {}", humantime::format_duration(after)),
                false,
                None,
            ),
        };
        let retry_at = (!permanent && attempt.attempt < attempt.max_attempts).then(|| {
            let policy = self.retry_policy(attempt.kind, attempt.backoff, defaults.retry);
            let delay = policy.delay_or_asked(attempt.attempt, asked, unit_sample);
            now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
        });
        TaskOutcome::Failed { error, retry_at }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> AttemptDefaults {
        AttemptDefaults {
            retry: RetryPolicy {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(60),
            },
            cache_ttl: Duration::from_secs(3600),
        }
    }

    fn outcome(kind: &str, attempt: i32, end: AttemptEnd) -> TaskOutcome {
        let types = TaskTypes::default();
        let kind = TaskType::new(kind).unwrap();
        let input = json!({"string": "x"});
        let a = Attempt {
            kind: &kind,
            input: &input,
            attempt,
            max_attempts: 3,
            backoff: None,
            tenant: None,
        };
        types.attempt_outcome(&a, end, &defaults(), now(), 0.5)
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn failed(permanent: bool, retry_after: Option<Duration>) -> AttemptEnd {
        AttemptEnd::Failed {
            error: "boom".into(),
            permanent,
            retry_after,
        }
    }

    #[test]
    fn a_result_succeeds_and_is_cached_where_the_type_caches() {
        let TaskOutcome::Succeeded { result, cache } =
            outcome("md5", 1, AttemptEnd::Succeeded(json!({"md5": "…"})))
        else {
            panic!("not succeeded")
        };
        assert_eq!(result, json!({"md5": "…"}));
        let cache = cache.expect("md5 caches");
        assert_eq!(cache.expires_at, now() + chrono::Duration::hours(1));
        let TaskOutcome::Succeeded { cache, .. } =
            outcome("noop", 1, AttemptEnd::Succeeded(json!({})))
        else {
            panic!("not succeeded")
        };
        assert_eq!(cache, None, "noop does not cache");
    }

    #[test]
    fn a_retryable_failure_is_queued_again_after_the_backoff() {
        let TaskOutcome::Failed { error, retry_at } = outcome("noop", 1, failed(false, None))
        else {
            panic!()
        };
        assert_eq!(error, "boom");
        // Attempt 1: jitter 0.5 of a 1 s ceiling.
        assert_eq!(retry_at, Some(now() + chrono::Duration::milliseconds(500)));
    }

    #[test]
    fn an_asked_delay_wins_capped_by_the_backoff() {
        let TaskOutcome::Failed { retry_at, .. } =
            outcome("noop", 1, failed(false, Some(Duration::from_secs(10))))
        else {
            panic!()
        };
        assert_eq!(retry_at, Some(now() + chrono::Duration::seconds(10)));
        let TaskOutcome::Failed { retry_at, .. } =
            outcome("noop", 1, failed(false, Some(Duration::from_secs(3600))))
        else {
            panic!()
        };
        assert_eq!(retry_at, Some(now() + chrono::Duration::seconds(60)));
    }

    #[test]
    fn the_last_attempt_and_a_permanent_failure_are_dead() {
        let TaskOutcome::Failed { retry_at, .. } = outcome("noop", 3, failed(false, None)) else {
            panic!()
        };
        assert_eq!(retry_at, None);
        let TaskOutcome::Failed { retry_at, .. } = outcome("noop", 1, failed(true, None)) else {
            panic!()
        };
        assert_eq!(retry_at, None);
    }

    #[test]
    fn a_timeout_is_retryable_and_says_how_long_it_ran() {
        let TaskOutcome::Failed { error, retry_at } =
            outcome("noop", 2, AttemptEnd::TimedOut(Duration::from_secs(30)))
        else {
            panic!()
        };
        assert_eq!(error, "timed out after 30s");
        // Attempt 2: jitter 0.5 of a 2 s ceiling.
        assert_eq!(retry_at, Some(now() + chrono::Duration::seconds(1)));
        let TaskOutcome::Failed { retry_at, .. } =
            outcome("noop", 3, AttemptEnd::TimedOut(Duration::from_secs(30)))
        else {
            panic!()
        };
        assert_eq!(retry_at, None);
    }
}
