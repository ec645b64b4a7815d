//! Client authentication (`--api-keys FILE`): keys stored as SHA-256 hashes,
//! each with the scopes it grants, checked by one middleware (`auth.rs`) on
//! every task, event and request-log endpoint. Without keys configured every endpoint is
//! open, as before (and the node says so at start).
//!
//! The file is TOML:
//!
//! ```toml
//! [[key]]
//! name = "frontend"
//! sha256 = "…64 hex digits…"   # `weir api-key` makes a key and this line
//! scopes = ["submit", "read"]
//! tenant = "acme"              # optional: this key sees only acme's tasks
//! ```
//!
//! A key with a tenant stamps the tasks it submits with it, and sees,
//! cancels and retries only tasks of its tenant; another tenant's task is
//! answered 404, as if it did not exist. Its cache and idempotency keys are
//! its tenant's own, so nothing of another tenant's inputs shows through.
//!
//! Keys are 32 random bytes, so a plain hash is enough to keep them out of
//! the file; a lookup by hash leaks nothing of the key.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::Method;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Submit tasks and events, log requests (`POST /tasks`, `/hash/*`,
    /// `/write`, `GET /`).
    Submit,
    /// Read tasks, results, events, statistics.
    Read,
    /// Cancel and retry tasks.
    Manage,
}

impl Scope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::Submit => "submit",
            Scope::Read => "read",
            Scope::Manage => "manage",
        }
    }
}

/// The configured keys, by hash.
#[derive(Debug, Default)]
pub struct ApiKeys {
    by_hash: HashMap<[u8; 32], Key>,
}

#[derive(Debug)]
pub(crate) struct Key {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub tenant: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    sha256: String,
    scopes: Vec<Scope>,
    tenant: Option<String>,
}

/// Longest tenant name.
pub const MAX_TENANT_BYTES: usize = 64;

/// A tenant: 1 to 64 of `A-Za-z0-9_.-` (it is part of cache and
/// idempotency keys, so no `:` or `/`).
pub fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TENANT_BYTES
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl ApiKeys {
    /// Reads the keys file's text; an error names the entry and field.
    pub fn parse(text: &str) -> Result<Arc<ApiKeys>, String> {
        let file: KeysFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let mut keys = ApiKeys::default();
        for (i, entry) in file.key.into_iter().enumerate() {
            let at = format!("key[{i}] ({:?})", entry.name);
            let hash: [u8; 32] = hex::decode(entry.sha256.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("{at}.sha256: must be 64 hex digits"))?;
            if entry.scopes.is_empty() {
                return Err(format!("{at}.scopes: grants nothing"));
            }
            if entry.tenant.as_deref().is_some_and(|t| !valid_tenant(t)) {
                return Err(format!(
                    "{at}.tenant: 1 to {MAX_TENANT_BYTES} of A-Z a-z 0-9 _ . -"
                ));
            }
            let key = Key {
                name: entry.name,
                scopes: entry.scopes,
                tenant: entry.tenant,
            };
            if keys.by_hash.insert(hash, key).is_some() {
                return Err(format!("{at}.sha256: the same key is listed twice"));
            }
        }
        if keys.by_hash.is_empty() {
            return Err("no [[key]] entries: every request would be refused".into());
        }
        Ok(Arc::new(keys))
    }

    /// A fresh key and its file entry, for `weir api-key`.
    pub fn generate(name: &str, scopes: &[Scope], tenant: Option<&str>) -> (String, String) {
        let key = format!("wk_{}", hex::encode(rand::random::<[u8; 32]>()));
        let scopes = scopes
            .iter()
            .map(|s| format!("{:?}", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut entry = format!(
            "[[key]]\nname = {name:?}\nsha256 = \"{}\"\nscopes = [{scopes}]\n",
            hex::encode(Sha256::digest(key.as_bytes()))
        );
        if let Some(tenant) = tenant {
            entry.push_str(&format!("tenant = {tenant:?}\n"));
        }
        (key, entry)
    }

    pub(crate) fn find(&self, presented: &str) -> Option<&Key> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.by_hash.get(&hash)
    }
}

/// The scope a request needs; `None`: open to all (health, metrics, the
/// OpenAPI document, and the external workers' claim, heartbeat, complete
/// and fail, which take the worker token).
pub(crate) fn required_scope(method: &Method, path: &str) -> Option<Scope> {
    let open = path.starts_with("/health") || path == "/metrics" || path == "/openapi.json";
    // External workers present the worker token there instead.
    let external = *method == Method::POST
        && ((path.starts_with("/workers/") && path.ends_with("/claim"))
            || (path.starts_with("/tasks/")
                && ["/heartbeat", "/complete", "/fail"]
                    .iter()
                    .any(|end| path.ends_with(end))));
    if open || external {
        return None;
    }
    let submits = path == "/tasks"
        || path.starts_with("/hash/")
        || path == "/write"
        || path == "/workflows"
        || is_add_steps(path);
    Some(match *method {
        Method::GET | Method::HEAD if path == "/" => Scope::Submit,
        // Who did what is for operators.
        _ if path == "/audit" => Scope::Manage,
        Method::GET | Method::HEAD | Method::OPTIONS => Scope::Read,
        Method::POST if submits => Scope::Submit,
        _ => Scope::Manage,
    })
}

/// `POST /workflows/{id}/steps`: a running step adds steps. An external
/// worker may call it with the worker token instead of a key.
pub(crate) fn is_add_steps(path: &str) -> bool {
    path.strip_prefix("/workflows/")
        .and_then(|rest| rest.strip_suffix("/steps"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Whether `headers` carry the configured worker token (compared in
/// constant time).
pub(crate) fn is_worker_token(headers: &axum::http::HeaderMap, configured: Option<&str>) -> bool {
    match (bearer(headers), configured) {
        (Some(given), Some(expected)) => {
            bool::from(given.trim().as_bytes().ct_eq(expected.as_bytes()))
        }
        _ => false,
    }
}

/// The key a request presents: `Authorization: Bearer KEY` or `X-Api-Key`.
pub(crate) fn presented(req: &Request) -> Option<&str> {
    let headers = req.headers();
    bearer(headers)
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// The credential of `Authorization: Bearer <credential>`, for every check
/// this node makes (client keys, the external workers' token).
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_entry_parses_and_finds_its_key_only() {
        let (key, entry) = ApiKeys::generate("ci", &[Scope::Submit, Scope::Read], None);
        assert!(
            !entry.contains(&key),
            "the file holds the hash, not the key"
        );
        let keys = ApiKeys::parse(&entry).unwrap();
        let found = keys.find(&key).unwrap();
        assert_eq!(found.scopes, vec![Scope::Submit, Scope::Read]);
        assert_eq!(found.tenant, None);
        assert!(keys.find("wk_other").is_none());
    }

    #[test]
    fn bad_files_name_the_entry_and_field() {
        let err = ApiKeys::parse("[[key]]\nname = \"a\"\nsha256 = \"zz\"\nscopes = [\"read\"]")
            .unwrap_err();
        assert!(err.contains("key[0]") && err.contains("sha256"), "{err}");
        let err = ApiKeys::parse(&format!(
            "[[key]]\nname = \"a\"\nsha256 = \"{}\"\nscopes = [\"root\"]",
            "0".repeat(64)
        ))
        .unwrap_err();
        assert!(err.contains("root"), "{err}");
        assert!(ApiKeys::parse("").is_err(), "no keys at all");
        let err = ApiKeys::parse(&format!(
            "[[key]]\nname = \"a\"\nsha256 = \"{}\"\nscopes = [\"read\"]\ntenant = \"a:b\"",
            "0".repeat(64)
        ))
        .unwrap_err();
        assert!(err.contains("key[0]") && err.contains("tenant"), "{err}");
    }

    #[test]
    fn each_endpoint_needs_the_scope_its_method_implies() {
        let cases = [
            (Method::POST, "/tasks", Some(Scope::Submit)),
            (Method::POST, "/hash/md5", Some(Scope::Submit)),
            (Method::POST, "/write", Some(Scope::Submit)),
            (Method::GET, "/", Some(Scope::Submit)),
            (Method::GET, "/tasks/abc", Some(Scope::Read)),
            (Method::GET, "/messages", Some(Scope::Read)),
            (Method::DELETE, "/tasks/abc", Some(Scope::Manage)),
            (Method::POST, "/tasks/abc/retry", Some(Scope::Manage)),
            (Method::GET, "/health", None),
            (Method::GET, "/metrics", None),
            (Method::POST, "/workers/w1/claim", None),
            (Method::POST, "/tasks/abc/complete", None),
            (Method::GET, "/workers", Some(Scope::Read)),
            (Method::POST, "/tasks/bulk", Some(Scope::Manage)),
            (Method::GET, "/tasks/bulk/abc", Some(Scope::Read)),
            (Method::GET, "/audit", Some(Scope::Manage)),
        ];
        for (method, path, scope) in cases {
            assert_eq!(required_scope(&method, path), scope, "{method} {path}");
        }
    }
}
