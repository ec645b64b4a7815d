//! JWT bearer tokens beside API keys (`--jwt-jwks`): RS256 or ES256 tokens
//! signed by a key of a JWKS — a file, or an http(s) URL fetched again every
//! `--jwt-jwks-refresh` (an identity provider rotates its keys) — with
//! `iss`, `aud` and `exp` checked. The scopes and tenant come from
//! configurable claims; `sub` names the caller in the audit log. A refusal
//! says why; the token itself is never logged or echoed.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::api_keys::{valid_tenant, Scope};

/// What tokens must be and where their claims are.
#[derive(Clone, Debug)]
pub struct JwtSettings {
    /// The JWKS: a file path, or an `http://` / `https://` URL.
    pub jwks: String,
    pub issuer: String,
    pub audience: String,
    /// A space-separated string (OAuth's `scope`) or an array of strings.
    pub scopes_claim: String,
    pub tenant_claim: String,
    /// How often the JWKS is read again.
    pub refresh: Duration,
}

/// A verified token's caller.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub tenant: Option<String>,
}

/// Why a token was refused (the 401's message).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JwtError {
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    #[error("the token is signed with {0:?}; RS256 and ES256 are accepted")]
    Algorithm(Algorithm),
    #[error("no key of the JWKS matches the token's kid and algorithm")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience")]
    Audience,
    #[error("the token is from another issuer")]
    Issuer,
    #[error("the token lacks the {0:?} claim")]
    MissingClaim(String),
    #[error("the token's {0:?} claim is not a tenant (1 to 64 of A-Z a-z 0-9 _ . -)")]
    Tenant(String),
}

struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Checks tokens against the JWKS last read.
pub struct JwtVerifier {
    settings: JwtSettings,
    keys: ArcSwap<Vec<VerifyKey>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("settings", &self.settings)
            .field("keys", &self.keys.load().len())
            .finish()
    }
}

impl JwtVerifier {
    /// A verifier with no keys yet ([`JwtVerifier::reload`] reads them).
    pub fn new(settings: JwtSettings) -> Arc<JwtVerifier> {
        Arc::new(JwtVerifier {
            settings,
            keys: ArcSwap::from_pointee(Vec::new()),
        })
    }

    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    fn jwks_is_url(&self) -> bool {
        let s = &self.settings.jwks;
        s.starts_with("http://") || s.starts_with("https://")
    }

    /// Reads a JWKS file now (a URL is fetched by [`JwtVerifier::reload`]):
    /// a bad file stops the process at start.
    pub fn load_file(&self) -> Result<(), String> {
        if self.jwks_is_url() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&self.settings.jwks)
            .map_err(|e| format!("reading {}: {e}", self.settings.jwks))?;
        self.install(&text)
    }

    /// Reads the JWKS again, from its file or URL.
    pub async fn reload(&self) -> Result<(), String> {
        let text = if self.jwks_is_url() {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| e.to_string())?;
            let answer = client
                .get(&self.settings.jwks)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("fetching {}: {e}", self.settings.jwks))?;
            answer
                .text()
                .await
                .map_err(|e| format!("reading {}: {e}", self.settings.jwks))?
        } else {
            tokio::fs::read_to_string(&self.settings.jwks)
                .await
                .map_err(|e| format!("reading {}: {e}", self.settings.jwks))?
        };
        self.install(&text)
    }

    fn install(&self, text: &str) -> Result<(), String> {
        let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                (Some(KeyAlgorithm::RS256), _) => Algorithm::RS256,
                (Some(KeyAlgorithm::ES256), _) => Algorithm::ES256,
                (Some(_), _) => continue,
                (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
                (None, AlgorithmParameters::EllipticCurve(ec))
                    if ec.curve == EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                (None, _) => continue,
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| {
                format!("key {:?}: {e}", jwk.common.key_id.as_deref().unwrap_or("?"))
            })?;
            keys.push(VerifyKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            });
        }
        if keys.is_empty() {
            return Err("no RS256 or ES256 key in the JWKS".into());
        }
        self.keys.store(Arc::new(keys));
        Ok(())
    }

    /// Reads the JWKS every `refresh` until `stop` turns true; a failed
    /// read keeps the keys it had.
    pub async fn refresh_until(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.settings.refresh) => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = self.reload().await {
                tracing::warn!("jwt-jwks: {e} (keeping the keys read before)");
            }
        }
    }

    /// The caller a token names, if it verifies.
    pub fn verify(&self, token: &str) -> Result<Verified, JwtError> {
        let header = decode_header(token).map_err(|_| JwtError::Malformed)?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(JwtError::Algorithm(header.alg));
        }
        let keys = self.keys.load();
        let key = keys
            .iter()
            .find(|k| k.alg == header.alg && (header.kid.is_none() || k.kid == header.kid))
            .ok_or(JwtError::UnknownKey)?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        let claims = decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => JwtError::Signature,
                ErrorKind::ExpiredSignature => JwtError::Expired,
                ErrorKind::ImmatureSignature => JwtError::NotYetValid,
                ErrorKind::InvalidAudience => JwtError::Audience,
                ErrorKind::InvalidIssuer => JwtError::Issuer,
                ErrorKind::MissingRequiredClaim(c) => JwtError::MissingClaim(c.clone()),
                _ => JwtError::Malformed,
            })?
            .claims;
        self.caller(&claims)
    }

    fn caller(&self, claims: &Map<String, Value>) -> Result<Verified, JwtError> {
        let granted: Vec<&str> = match claims.get(&self.settings.scopes_claim) {
            Some(Value::String(s)) => s.split_whitespace().collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        // Names weir does not know are other services' scopes: ignored.
        let scopes = [Scope::Submit, Scope::Read, Scope::Manage]
            .into_iter()
            .filter(|s| granted.contains(&s.as_str()))
            .collect();
        let tenant = match claims.get(&self.settings.tenant_claim) {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) if valid_tenant(t) => Some(t.clone()),
            Some(_) => return Err(JwtError::Tenant(self.settings.tenant_claim.clone())),
        };
        let name = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("jwt")
            .to_string();
        Ok(Verified {
            name,
            scopes,
            tenant,
        })
    }
}

/// Whether a bearer credential is a JWT rather than an API key (three
/// base64url parts; weir's keys are `wk_` and hex).
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.split('.').count() == 3 && credential.starts_with("ey")
}
