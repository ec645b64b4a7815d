//! An API node's settings (`ApiNodeArgs`, `IngestArgs`) and `weir api`'s
//! command (`ApiArgs`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::ingest::IngestArgs;
use super::store::StoreArgs;
use super::types::TaskTypeArgs;

#[derive(Debug, Clone, Args)]
pub struct ApiNodeArgs {
    /// Simulated processing time of `GET /`, in milliseconds.
    #[arg(long, env = "WEIR_DELAY_MS", default_value_t = 0)]
    pub delay_ms: u64,
    /// Bearer token external workers present to `POST /workers/{id}/claim`
    /// and report results (without it those endpoints refuse every call;
    /// `weir up` generates one).
    #[arg(long, env = "WEIR_WORKER_TOKEN")]
    pub worker_token: Option<String>,
    /// Client keys (TOML, made with `weir api-key`): every task, event and
    /// request-log endpoint then needs a key with the right scope. Without
    /// it those endpoints are open to whoever reaches them.
    #[arg(long, env = "WEIR_API_KEYS")]
    pub api_keys: Option<std::path::PathBuf>,
    /// JWT bearer tokens beside (or instead of) API keys: the JWKS — a
    /// file, or an http(s) URL read again every --jwt-jwks-refresh — whose
    /// RS256 or ES256 keys sign them. Needs --jwt-issuer and --jwt-audience.
    #[arg(long, env = "WEIR_JWT_JWKS")]
    pub jwt_jwks: Option<String>,
    /// The `iss` every token must carry.
    #[arg(long, env = "WEIR_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The `aud` every token must carry (this API's name at the provider).
    #[arg(long, env = "WEIR_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The claim holding the scopes (`submit`, `read`, `manage`): a
    /// space-separated string or an array.
    #[arg(long, env = "WEIR_JWT_SCOPES_CLAIM", default_value = "scope")]
    pub jwt_scopes_claim: String,
    /// The claim holding the caller's tenant (absent: no tenant).
    #[arg(long, env = "WEIR_JWT_TENANT_CLAIM", default_value = "tenant")]
    pub jwt_tenant_claim: String,
    /// How often the JWKS is read again (key rotation).
    #[arg(long, env = "WEIR_JWT_JWKS_REFRESH", default_value = "5m", value_parser = humantime::parse_duration)]
    pub jwt_jwks_refresh: Duration,
    /// An origin (`https://app.example.com`) whose pages may call the API
    /// from a browser; repeat or comma-separate for more, `*` for any.
    /// Without it browsers refuse cross-origin calls (no CORS headers).
    #[arg(long = "cors-origin", env = "WEIR_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "WEIR_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Attempts a task gets unless its submission says otherwise.
    #[arg(long, env = "WEIR_MAX_ATTEMPTS", default_value_t = weir_core::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: i32,
    /// A worker silent this long is shown as offline.
    #[arg(long, env = "WEIR_WORKER_OFFLINE_AFTER", default_value = "10s", value_parser = humantime::parse_duration)]
    pub worker_offline_after: Duration,
    /// Largest `POST /write` body, in bytes.
    #[arg(long, env = "WEIR_MAX_WRITE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_write_bytes: usize,
    /// Most events in one `POST /write`.
    #[arg(long, env = "WEIR_MAX_WRITE_EVENTS", default_value_t = 100_000)]
    pub max_write_events: usize,
    #[command(flatten)]
    pub ingest: IngestArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Where this API node listens.
    #[arg(long, env = "WEIR_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// This node's id (default: api-<pid>).
    #[arg(long, env = "WEIR_NODE_ID")]
    pub node_id: Option<String>,
    /// A running lb to join at start and leave (drain, then deregister) on shutdown.
    #[arg(long, env = "WEIR_REGISTER_WITH")]
    pub register_with: Option<String>,
    /// The URL the lb reaches this node at (default: http://<listen address>).
    #[arg(long, env = "WEIR_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// The lb's admin token, for --register-with.
    #[arg(long, env = "WEIR_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// On SIGTERM, answer `/health/ready` with 503 and keep serving this
    /// long before closing the listener, so whatever routes to this node
    /// stops first (e.g. 5s behind a Kubernetes Service).
    #[arg(long, env = "WEIR_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub api: ApiNodeArgs,
    #[command(flatten)]
    pub types: TaskTypeArgs,
}

impl ApiNodeArgs {
    pub fn config(
        &self,
        node_id: String,
        db_busy_timeout: Duration,
        task_types: weir_core::TaskTypes,
    ) -> anyhow::Result<weir_api::ApiConfig> {
        let mut config = weir_api::ApiConfig::new(node_id);
        config.task_types = std::sync::Arc::new(task_types);
        config.worker_token = self.worker_token.clone().filter(|t| !t.is_empty());
        config.api_keys = match &self.api_keys {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("api-keys: reading {}: {e}", path.display()))?;
                let keys = weir_api::api_keys::ApiKeys::parse(&text)
                    .map_err(|e| anyhow::anyhow!("api-keys: {}: {e}", path.display()))?;
                Some(keys)
            }
            None => None,
        };
        config.jwt = self.jwt()?;
        config.cors_origins = valid_cors_origins(&self.cors_origins)?;
        config.max_write_bytes = self.max_write_bytes;
        config.max_write_events = self.max_write_events.max(1);
        config.ingest_buffer = self.ingest.buffer()?;
        config.db_busy_timeout = db_busy_timeout;
        config.delay = Duration::from_millis(self.delay_ms);
        config.max_body_bytes = self.max_body_bytes;
        config.default_max_attempts = self.max_attempts.clamp(1, 100);
        config.worker_offline_after = self.worker_offline_after;
        Ok(config)
    }
}

impl ApiNodeArgs {
    /// The token verifier `--jwt-jwks` asks for; a JWKS file is read now,
    /// so a bad one stops the node at start.
    fn jwt(&self) -> anyhow::Result<Option<std::sync::Arc<weir_api::jwt::JwtVerifier>>> {
        let Some(jwks) = self.jwt_jwks.clone().filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let required = |value: &Option<String>, key: &str| {
            value
                .clone()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| anyhow::anyhow!("{key}: required with --jwt-jwks"))
        };
        let verifier = weir_api::jwt::JwtVerifier::new(weir_api::jwt::JwtSettings {
            jwks,
            issuer: required(&self.jwt_issuer, "jwt-issuer")?,
            audience: required(&self.jwt_audience, "jwt-audience")?,
            scopes_claim: self.jwt_scopes_claim.clone(),
            tenant_claim: self.jwt_tenant_claim.clone(),
            refresh: self.jwt_jwks_refresh.max(Duration::from_millis(100)),
        });
        verifier
            .load_file()
            .map_err(|e| anyhow::anyhow!("jwt-jwks: {e}"))?;
        Ok(Some(verifier))
    }
}

/// `--cors-origin` values: `*`, or `scheme://host[:port]` exactly as a
/// browser sends it in `Origin` (no path, no trailing slash).
fn valid_cors_origins(origins: &[String]) -> anyhow::Result<Vec<String>> {
    let mut valid = Vec::new();
    for origin in origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
        let well_formed = origin == "*"
            || (http::HeaderValue::from_str(origin).is_ok()
                && origin.split_once("://").is_some_and(|(scheme, host)| {
                    matches!(scheme, "http" | "https")
                        && !host.is_empty()
                        && !host.contains(['/', ' ', '?', '#'])
                }));
        if !well_formed {
            anyhow::bail!(
                "cors-origin: {origin:?} is not `*` or an origin such as https://app.example.com"
            );
        }
        valid.push(origin.to_owned());
    }
    Ok(valid)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn cors_origins_must_be_origins() {
        let ok = valid_cors_origins(&["https://app.example.com".into(), "*".into()]).unwrap();
        assert_eq!(ok, ["https://app.example.com", "*"]);
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "ftp://x",
            "https://a\u{7f}b",
        ] {
            let err = valid_cors_origins(&[bad.into()]).unwrap_err().to_string();
            assert!(err.starts_with("cors-origin: "), "{err}");
        }
    }
}
