//! Sensitive task inputs (argon2's password, any field a task type lists as
//! `sensitive`): sealed with ChaCha20-Poly1305 before the task is stored,
//! opened only in the worker running an attempt, shown as `"[redacted]"` in
//! every answer and listing.
//!
//! A sealed field is stored as `{"$weir_sealed": BASE64(nonce ‖ ciphertext)}`;
//! the plaintext is the field's JSON. Every API and worker node of a cluster
//! needs the same key (`--secrets-key`); `weir up` keeps one in its data
//! directory.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// What a sealed value is shown as.
pub const REDACTED: &str = "[redacted]";
const SEALED: &str = "$weir_sealed";
const NONCE_LEN: usize = 12;

/// Where a node's key came from, for what it says at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    /// `--secrets-key` or a key file: sealed inputs cannot be read from the
    /// database without it.
    Configured,
    /// No key given: a fixed, public one. Answers and logs still never show
    /// a secret, but whoever reads the database can open it.
    Public,
}

/// Seals and opens sensitive input fields with one key.
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    origin: KeyOrigin,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Default for Sealer {
    /// The public key (see [`KeyOrigin::Public`]).
    fn default() -> Self {
        let key: [u8; 32] = Sha256::digest(b"weir public secrets key, v1").into();
        Sealer::new(key, KeyOrigin::Public)
    }
}

/// A sealed field that could not be opened.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("input field {field:?} is sealed with another key (every api and worker node needs the same --secrets-key) or damaged")]
pub struct OpenError {
    pub field: String,
}

impl Sealer {
    fn new(key: [u8; 32], origin: KeyOrigin) -> Self {
        Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
            origin,
        }
    }

    /// A key given as 64 hex digits; the error says what is wrong, never
    /// what was given.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let bytes =
            hex::decode(text.trim()).map_err(|_| "must be 64 hex digits (32 bytes)".to_string())?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must be 64 hex digits (32 bytes)".to_string())?;
        Ok(Sealer::new(key, KeyOrigin::Configured))
    }

    /// A fresh random key as 64 hex digits.
    pub fn generate_hex() -> String {
        hex::encode(rand::random::<[u8; 32]>())
    }

    pub fn origin(&self) -> KeyOrigin {
        self.origin
    }

    /// Seals the listed top-level fields of an object input, where present.
    pub fn seal_fields(&self, input: &mut Value, fields: &[String]) {
        let Some(obj) = input.as_object_mut() else {
            return;
        };
        for field in fields {
            if let Some(value) = obj.get_mut(field) {
                if !is_sealed(value) {
                    *value = self.seal(value);
                }
            }
        }
    }

    fn seal(&self, value: &Value) -> Value {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let plain = serde_json::to_vec(value).unwrap_or_default();
        // Encryption with a valid key and nonce cannot fail.
        let cipher = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce_bytes), plain.as_slice())
            .unwrap_or_default();
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&cipher);
        let mut obj = Map::new();
        obj.insert(SEALED.into(), Value::String(BASE64.encode(sealed)));
        Value::Object(obj)
    }

    /// Opens every sealed top-level field, for the attempt that needs it.
    pub fn open(&self, input: &mut Value) -> Result<(), OpenError> {
        let Some(obj) = input.as_object_mut() else {
            return Ok(());
        };
        for (field, value) in obj.iter_mut() {
            let Some(sealed) = sealed_text(value) else {
                continue;
            };
            let failed = || OpenError {
                field: field.clone(),
            };
            let bytes = BASE64.decode(sealed).map_err(|_| failed())?;
            if bytes.len() < NONCE_LEN {
                return Err(failed());
            }
            let (nonce, cipher) = bytes.split_at(NONCE_LEN);
            let plain = self
                .cipher
                .decrypt(Nonce::from_slice(nonce), cipher)
                .map_err(|_| failed())?;
            *value = serde_json::from_slice(&plain).map_err(|_| failed())?;
        }
        Ok(())
    }
}

fn sealed_text(value: &Value) -> Option<&str> {
    let obj = value.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    obj.get(SEALED)?.as_str()
}

/// Whether a value is a sealed field.
pub fn is_sealed(value: &Value) -> bool {
    sealed_text(value).is_some()
}

/// Shows every sealed top-level field as [`REDACTED`].
pub fn redact(input: &mut Value) {
    if let Some(obj) = input.as_object_mut() {
        for value in obj.values_mut() {
            if is_sealed(value) {
                *value = Value::String(REDACTED.into());
            }
        }
    }
}

/// Serializes an input with its sealed fields shown as [`REDACTED`], for
/// `#[serde(serialize_with)]`: every answer that shows a task redacts.
pub fn serialize_redacted<S: serde::Serializer>(input: &Value, s: S) -> Result<S::Ok, S::Error> {
    let has_sealed = input
        .as_object()
        .is_some_and(|obj| obj.values().any(is_sealed));
    if !has_sealed {
        return serde::Serialize::serialize(input, s);
    }
    let mut shown = input.clone();
    redact(&mut shown);
    serde::Serialize::serialize(&shown, s)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_sealed_field_holds_no_plaintext_and_opens_with_the_same_key() {
        let sealer = Sealer::from_hex(&Sealer::generate_hex()).unwrap();
        let mut input = json!({"string": "hunter2-secret", "iterations": 2});
        sealer.seal_fields(&mut input, &fields(&["string", "absent"]));
        let stored = input.to_string();
        assert!(!stored.contains("hunter2"), "{stored}");
        assert_eq!(input["iterations"], 2, "other fields stay as they are");
        let mut shown = input.clone();
        redact(&mut shown);
        assert_eq!(shown, json!({"string": REDACTED, "iterations": 2}));
        sealer.open(&mut input).unwrap();
        assert_eq!(input, json!({"string": "hunter2-secret", "iterations": 2}));
    }

    #[test]
    fn another_key_cannot_open_and_says_which_field() {
        let a = Sealer::from_hex(&Sealer::generate_hex()).unwrap();
        let b = Sealer::default();
        let mut input = json!({"password": {"nested": true}});
        a.seal_fields(&mut input, &fields(&["password"]));
        let err = b.open(&mut input).unwrap_err();
        assert_eq!(err.field, "password");
        assert!(!err.to_string().contains("nested"));
    }

    #[test]
    fn keys_are_64_hex_digits_and_errors_do_not_echo_them() {
        assert!(Sealer::from_hex("abc").is_err());
        let err = Sealer::from_hex("zz-not-a-key-zz").unwrap_err();
        assert!(!err.contains("not-a-key"));
        assert_eq!(
            Sealer::from_hex(&"0f".repeat(32)).unwrap().origin(),
            KeyOrigin::Configured
        );
        assert_eq!(Sealer::default().origin(), KeyOrigin::Public);
    }
}
