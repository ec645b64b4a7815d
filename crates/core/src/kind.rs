//! Task kinds: which work weir knows how to do, and what input each one takes.
//!
//! The API validates input here before a task is queued, so a worker never claims
//! a task it cannot run; the worker crate holds the code that runs each kind.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The longest a `sleep` task may ask to sleep, in milliseconds.
pub const MAX_SLEEP_MS: u64 = 600_000;

/// Bounds on argon2 parameters a client may ask for: enough to be realistic, small
/// enough that one request cannot pin a worker's memory or CPU for long.
pub const ARGON2_MAX_MEMORY_KIB: u64 = 65_536;
pub const ARGON2_MIN_MEMORY_KIB: u64 = 8;
pub const ARGON2_MAX_ITERATIONS: u64 = 10;
pub const ARGON2_MAX_PARALLELISM: u64 = 4;

/// The kinds of task weir runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// `{"string": S}` → `{"md5": hex}`.
    Md5,
    /// `{"string": S}` → `{"sha256": hex}`.
    Sha256,
    /// `{"string": S, "memory_kib"?, "iterations"?, "parallelism"?}` → `{"argon2": PHC string}` (argon2id, random salt).
    Argon2,
    /// `{"ms": N}`: simulated slow work.
    Sleep,
    /// `{}` → `{}`: no work at all, for measuring the queue itself.
    Noop,
    /// `{"fail_times": N}`: fails its first N attempts, then succeeds — for
    /// tests and demos of retries and dead letters.
    Flaky,
}

/// The most failures a `flaky` task may ask for.
pub const MAX_FLAKY_FAILURES: u64 = 100;

/// Input a client sent that weir will not queue.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputError {
    /// The task type is not one weir knows.
    #[error("unknown task type {0:?}; known types: md5, sha256, argon2, sleep, noop, flaky")]
    UnknownKind(String),
    /// The input does not have the shape the kind needs.
    #[error("{0}")]
    Invalid(String),
}

impl TaskKind {
    pub const ALL: [TaskKind; 6] = [
        TaskKind::Md5,
        TaskKind::Sha256,
        TaskKind::Argon2,
        TaskKind::Sleep,
        TaskKind::Noop,
        TaskKind::Flaky,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Md5 => "md5",
            TaskKind::Sha256 => "sha256",
            TaskKind::Argon2 => "argon2",
            TaskKind::Sleep => "sleep",
            TaskKind::Noop => "noop",
            TaskKind::Flaky => "flaky",
        }
    }

    /// Whether the same input always gives the same result, so results may be
    /// served from the shared cache. Argon2 salts randomly, so it is not.
    pub fn is_cacheable(self) -> bool {
        matches!(self, TaskKind::Md5 | TaskKind::Sha256)
    }

    /// Checks `input` has the shape this kind needs.
    pub fn validate_input(self, input: &Value) -> Result<(), InputError> {
        let obj = input.as_object().ok_or_else(|| {
            InputError::Invalid(format!("input for {} must be a JSON object", self.as_str()))
        })?;
        match self {
            TaskKind::Md5 | TaskKind::Sha256 => {
                require_string(self, obj.get("string"))?;
            }
            TaskKind::Argon2 => {
                require_string(self, obj.get("string"))?;
                bounded(
                    obj.get("memory_kib"),
                    "memory_kib",
                    ARGON2_MIN_MEMORY_KIB,
                    ARGON2_MAX_MEMORY_KIB,
                )?;
                bounded(
                    obj.get("iterations"),
                    "iterations",
                    1,
                    ARGON2_MAX_ITERATIONS,
                )?;
                bounded(
                    obj.get("parallelism"),
                    "parallelism",
                    1,
                    ARGON2_MAX_PARALLELISM,
                )?;
            }
            TaskKind::Sleep => {
                let ms = obj
                    .get("ms")
                    .ok_or_else(|| InputError::Invalid("sleep needs input.ms".into()))?;
                match ms.as_u64() {
                    Some(ms) if ms <= MAX_SLEEP_MS => {}
                    _ => {
                        return Err(InputError::Invalid(format!(
                            "input.ms must be an integer from 0 to {MAX_SLEEP_MS}"
                        )))
                    }
                }
            }
            TaskKind::Noop => {}
            TaskKind::Flaky => {
                bounded(obj.get("fail_times"), "fail_times", 0, MAX_FLAKY_FAILURES)?;
            }
        }
        Ok(())
    }

    /// The shared-cache key for this kind and input, if the kind is cacheable:
    /// the kind and a SHA-256 of the input string, so keys stay short whatever
    /// the input's size.
    pub fn cache_key(self, input: &Value) -> Option<String> {
        if !self.is_cacheable() {
            return None;
        }
        let s = input.get("string")?.as_str()?;
        Some(format!(
            "{}:{}",
            self.as_str(),
            hex::encode(Sha256::digest(s))
        ))
    }
}

fn require_string(kind: TaskKind, v: Option<&Value>) -> Result<(), InputError> {
    match v {
        Some(Value::String(_)) => Ok(()),
        Some(_) => Err(InputError::Invalid(format!(
            "input.string for {} must be a string",
            kind.as_str()
        ))),
        None => Err(InputError::Invalid(format!(
            "{} needs input.string",
            kind.as_str()
        ))),
    }
}

fn bounded(v: Option<&Value>, name: &str, min: u64, max: u64) -> Result<(), InputError> {
    match v {
        None => Ok(()),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(()),
            _ => Err(InputError::Invalid(format!(
                "input.{name} must be an integer from {min} to {max}"
            ))),
        },
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskKind {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| InputError::UnknownKind(s.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_known_kinds_and_rejects_others() {
        assert_eq!("md5".parse::<TaskKind>(), Ok(TaskKind::Md5));
        assert_eq!("argon2".parse::<TaskKind>(), Ok(TaskKind::Argon2));
        assert!(matches!(
            "bcrypt".parse::<TaskKind>(),
            Err(InputError::UnknownKind(k)) if k == "bcrypt"
        ));
    }

    #[test]
    fn validates_input_shapes() {
        assert!(TaskKind::Md5
            .validate_input(&json!({"string": "x"}))
            .is_ok());
        assert!(TaskKind::Md5.validate_input(&json!({})).is_err());
        assert!(TaskKind::Md5.validate_input(&json!({"string": 5})).is_err());
        assert!(TaskKind::Sha256.validate_input(&json!("x")).is_err());
        assert!(TaskKind::Sleep.validate_input(&json!({"ms": 10})).is_ok());
        assert!(TaskKind::Sleep.validate_input(&json!({"ms": -1})).is_err());
        assert!(TaskKind::Sleep
            .validate_input(&json!({"ms": MAX_SLEEP_MS + 1}))
            .is_err());
        assert!(TaskKind::Argon2
            .validate_input(&json!({"string": "pw", "memory_kib": 64, "iterations": 1}))
            .is_ok());
        assert!(TaskKind::Argon2
            .validate_input(&json!({"string": "pw", "memory_kib": 10_000_000}))
            .is_err());
    }

    #[test]
    fn cache_keys_only_for_deterministic_kinds() {
        let input = json!({"string": "test_value"});
        let md5 = TaskKind::Md5.cache_key(&input).unwrap();
        let sha = TaskKind::Sha256.cache_key(&input).unwrap();
        assert!(md5.starts_with("md5:"));
        assert_ne!(md5, sha);
        assert_eq!(TaskKind::Argon2.cache_key(&input), None);
        assert_ne!(
            TaskKind::Md5.cache_key(&json!({"string": "other"})),
            Some(md5)
        );
    }
}
