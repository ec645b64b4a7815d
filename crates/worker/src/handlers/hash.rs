//! md5 and sha256.

use md5::Md5;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use weir_core::Builtin;

/// `{"md5": hex}` or `{"sha256": hex}`.
pub fn digest(kind: Builtin, bytes: &[u8]) -> Value {
    match kind {
        Builtin::Md5 => json!({ "md5": hex::encode(Md5::digest(bytes)) }),
        _ => json!({ "sha256": hex::encode(Sha256::digest(bytes)) }),
    }
}
