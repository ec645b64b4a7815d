//! The built-in handlers. CPU-heavy work runs on the blocking pool so it
//! never stalls the async runtime.

use async_trait::async_trait;
use serde_json::Value;
use weir_core::Builtin;

use super::{argon2, hash, sleep};
use crate::handler::{Handler, HandlerError, Job, Progress};

/// Inputs larger than this are hashed on the blocking pool.
const INLINE_HASH_MAX_BYTES: usize = 64 * 1024;

/// Runs one of [`Builtin`].
pub struct BuiltinHandler(pub Builtin);

#[async_trait]
impl Handler for BuiltinHandler {
    async fn run(&self, job: Job) -> Result<Value, HandlerError> {
        execute(self.0, &job.input, job.attempt, &job.progress)
            .await
            .map_err(|e| {
                // Input the API let through but the kind cannot use will not
                // work on a retry either.
                if e.starts_with("input") {
                    HandlerError::permanent(e)
                } else {
                    HandlerError::retryable(e)
                }
            })
    }
}

/// Runs one attempt (`attempt` counts from 1) to completion, reporting
/// progress through `progress` where the kind can tell.
async fn execute(
    kind: Builtin,
    input: &Value,
    attempt: i32,
    progress: &Progress,
) -> Result<Value, String> {
    match kind {
        Builtin::Md5 | Builtin::Sha256 => {
            let s = string_field(input)?;
            if s.len() <= INLINE_HASH_MAX_BYTES {
                Ok(hash::digest(kind, s.as_bytes()))
            } else {
                let s = s.to_owned();
                tokio::task::spawn_blocking(move || hash::digest(kind, s.as_bytes()))
                    .await
                    .map_err(|e| format!("hashing failed: {e}"))
            }
        }
        Builtin::Argon2 => {
            let params = argon2::Params::from_input(input)?;
            let password = string_field(input)?.to_owned();
            tokio::task::spawn_blocking(move || argon2::hash(&password, params))
                .await
                .map_err(|e| format!("argon2 failed: {e}"))?
        }
        Builtin::Sleep => sleep::run(input, progress).await,
        Builtin::Noop => Ok(Value::Object(Default::default())),
        Builtin::Flaky => {
            let fail_times = input.get("fail_times").and_then(Value::as_u64).unwrap_or(0);
            if u64::try_from(attempt).unwrap_or(0) <= fail_times {
                Err(format!(
                    "flaky: attempt {attempt} of the first {fail_times} fails on purpose"
                ))
            } else {
                Ok(serde_json::json!({ "succeeded_on_attempt": attempt }))
            }
        }
    }
}

fn string_field(input: &Value) -> Result<&str, String> {
    input
        .get("string")
        .and_then(Value::as_str)
        .ok_or_else(|| "input.string must be a string".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn md5_and_sha256_match_known_digests() {
        let input = json!({"string": "test_value"});
        assert_eq!(
            execute(Builtin::Md5, &input, 1, &Progress::default())
                .await
                .unwrap(),
            json!({"md5": "8dd066a9072cfaca57bcedd7f233432f"})
        );
        assert_eq!(
            execute(
                Builtin::Sha256,
                &json!({"string": "abc"}),
                1,
                &Progress::default()
            )
            .await
            .unwrap(),
            json!({"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"})
        );
    }

    #[tokio::test]
    async fn large_inputs_hash_the_same_off_the_runtime() {
        let big = "a".repeat(INLINE_HASH_MAX_BYTES + 1);
        let got = execute(
            Builtin::Md5,
            &json!({ "string": big.clone() }),
            1,
            &Progress::default(),
        )
        .await
        .unwrap();
        let want = hash::digest(Builtin::Md5, big.as_bytes());
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn argon2_gives_a_verifiable_phc_string() {
        let out = execute(
            Builtin::Argon2,
            &json!({"string": "hunter2", "memory_kib": 64, "iterations": 1}),
            1,
            &Progress::default(),
        )
        .await
        .unwrap();
        let phc = out["argon2"].as_str().unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(argon2::verify("hunter2", phc));
        assert!(!argon2::verify("hunter3", phc));
    }

    #[tokio::test]
    async fn bad_input_is_an_error_not_a_panic() {
        assert!(execute(Builtin::Md5, &json!({}), 1, &Progress::default())
            .await
            .is_err());
        assert!(
            execute(Builtin::Sleep, &json!({"ms": "x"}), 1, &Progress::default())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn sleep_reports_progress_up_to_100() {
        let progress = Progress::default();
        assert_eq!(progress.get(), None);
        execute(Builtin::Sleep, &json!({"ms": 40}), 1, &progress)
            .await
            .unwrap();
        assert_eq!(progress.get(), Some(100));
    }

    #[tokio::test]
    async fn flaky_fails_its_first_attempts_then_succeeds() {
        let input = json!({"fail_times": 2});
        assert!(execute(Builtin::Flaky, &input, 1, &Progress::default())
            .await
            .is_err());
        assert!(execute(Builtin::Flaky, &input, 2, &Progress::default())
            .await
            .is_err());
        assert_eq!(
            execute(Builtin::Flaky, &input, 3, &Progress::default())
                .await
                .unwrap(),
            json!({"succeeded_on_attempt": 3})
        );
        assert_eq!(
            execute(Builtin::Noop, &json!({}), 1, &Progress::default())
                .await
                .unwrap(),
            json!({})
        );
    }
}
