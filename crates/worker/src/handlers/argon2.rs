//! argon2id password hashing with a random salt, output as a PHC string.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Version};
use serde_json::{json, Value};

/// OWASP's recommended argon2id settings: 19 MiB, 2 iterations, 1 lane.
const DEFAULT_MEMORY_KIB: u32 = 19_456;
const DEFAULT_ITERATIONS: u32 = 2;
const DEFAULT_PARALLELISM: u32 = 1;

/// Cost parameters, already bounded by input validation in `weir_core`.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

impl Params {
    pub fn from_input(input: &Value) -> Result<Self, String> {
        let field = |name: &str, default: u32| -> Result<u32, String> {
            match input.get(name) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| format!("input.{name} must be a small positive integer")),
            }
        };
        Ok(Params {
            memory_kib: field("memory_kib", DEFAULT_MEMORY_KIB)?,
            iterations: field("iterations", DEFAULT_ITERATIONS)?,
            parallelism: field("parallelism", DEFAULT_PARALLELISM)?,
        })
    }
}

/// Blocking: call from the blocking pool.
pub fn hash(password: &str, p: Params) -> Result<Value, String> {
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, None)
        .map_err(|e| format!("invalid argon2 parameters: {e}"))?;
    let salt = SaltString::generate(&mut OsRng);
    let phc = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| format!("argon2 failed: {e}"))?;
    Ok(json!({ "argon2": phc.to_string() }))
}

#[cfg(test)]
pub fn verify(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}
