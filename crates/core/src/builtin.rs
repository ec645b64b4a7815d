//! The built-in handlers: the work weir does without any user code, and what
//! input each one takes.
//!
//! Each is registered as an ordinary task type of the same name (see
//! [`crate::task_type`]); a user type may also name one as its handler. The
//! API validates input here before a task is queued; the worker crate holds
//! the code that runs each one.

use std::fmt;

use crate::input::InputError;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The longest a `sleep` task may ask to sleep, in milliseconds.
pub const MAX_SLEEP_MS: u64 = 600_000;

/// Bounds on argon2 parameters a client may ask for: enough to be realistic, small
/// enough that one request cannot pin a worker's memory or CPU for long.
pub const ARGON2_MAX_MEMORY_KIB: u64 = 65_536;
pub const ARGON2_MIN_MEMORY_KIB: u64 = 8;
pub const ARGON2_MAX_ITERATIONS: u64 = 10;
pub const ARGON2_MAX_PARALLELISM: u64 = 4;

/// The handlers compiled into weir.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
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

impl Builtin {
    pub const ALL: [Builtin; 6] = [
        Builtin::Md5,
        Builtin::Sha256,
        Builtin::Argon2,
        Builtin::Sleep,
        Builtin::Noop,
        Builtin::Flaky,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Builtin::Md5 => "md5",
            Builtin::Sha256 => "sha256",
            Builtin::Argon2 => "argon2",
            Builtin::Sleep => "sleep",
            Builtin::Noop => "noop",
            Builtin::Flaky => "flaky",
        }
    }

    /// Input fields that are secrets: sealed at rest, redacted when shown.
    pub fn sensitive_fields(self) -> &'static [&'static str] {
        match self {
            Builtin::Argon2 => &["string"],
            _ => &[],
        }
    }

    /// Whether the same input always gives the same result, so results may be
    /// served from the shared cache. Argon2 salts randomly, so it is not.
    pub fn is_cacheable(self) -> bool {
        matches!(self, Builtin::Md5 | Builtin::Sha256)
    }

    /// Checks `input` has the shape this kind needs.
    pub fn validate_input(self, input: &Value) -> Result<(), InputError> {
        let obj = input.as_object().ok_or_else(|| {
            InputError::Invalid(format!("input for {} must be a JSON object", self.as_str()))
        })?;
        match self {
            Builtin::Md5 | Builtin::Sha256 => {
                require_string(self, obj.get("string"))?;
            }
            Builtin::Argon2 => {
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
            Builtin::Sleep => {
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
            Builtin::Noop => {}
            Builtin::Flaky => {
                bounded(obj.get("fail_times"), "fail_times", 0, MAX_FLAKY_FAILURES)?;
            }
        }
        Ok(())
    }

    /// What identifies a cacheable input: for the hashes, a SHA-256 of the
    /// input string (so keys stay short whatever the input's size); `None`
    /// for kinds whose results are not cached by default.
    pub fn cache_digest(self, input: &Value) -> Option<String> {
        if !self.is_cacheable() {
            return None;
        }
        let s = input.get("string")?.as_str()?;
        Some(hex::encode(Sha256::digest(s)))
    }

    /// The built-in of that name, if any.
    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

fn require_string(kind: Builtin, v: Option<&Value>) -> Result<(), InputError> {
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

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_builtins_by_name() {
        assert_eq!(Builtin::from_name("md5"), Some(Builtin::Md5));
        assert_eq!(Builtin::from_name("argon2"), Some(Builtin::Argon2));
        assert_eq!(Builtin::from_name("bcrypt"), None);
    }

    #[test]
    fn validates_input_shapes() {
        assert!(Builtin::Md5.validate_input(&json!({"string": "x"})).is_ok());
        assert!(Builtin::Md5.validate_input(&json!({})).is_err());
        assert!(Builtin::Md5.validate_input(&json!({"string": 5})).is_err());
        assert!(Builtin::Sha256.validate_input(&json!("x")).is_err());
        assert!(Builtin::Sleep.validate_input(&json!({"ms": 10})).is_ok());
        assert!(Builtin::Sleep.validate_input(&json!({"ms": -1})).is_err());
        assert!(Builtin::Sleep
            .validate_input(&json!({"ms": MAX_SLEEP_MS + 1}))
            .is_err());
        assert!(Builtin::Argon2
            .validate_input(&json!({"string": "pw", "memory_kib": 64, "iterations": 1}))
            .is_ok());
        assert!(Builtin::Argon2
            .validate_input(&json!({"string": "pw", "memory_kib": 10_000_000}))
            .is_err());
    }

    #[test]
    fn cache_digests_only_for_deterministic_kinds() {
        let input = json!({"string": "test_value"});
        let md5 = Builtin::Md5.cache_digest(&input).unwrap();
        assert_eq!(md5.len(), 64);
        assert_eq!(Builtin::Argon2.cache_digest(&input), None);
        assert_ne!(
            Builtin::Md5.cache_digest(&json!({"string": "other"})),
            Some(md5)
        );
    }
}
