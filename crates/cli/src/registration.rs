//! `weir api --register-with LB`: the node adds itself to a running load
//! balancer at start, and on shutdown drains itself there (no new requests)
//! before it stops serving, then removes itself — nodes come and go without
//! restarting the lb.

use std::time::Duration;

use anyhow::Context;
use serde_json::json;

/// How long each call to the lb may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Registration {
    http: reqwest::Client,
    lb: String,
    token: String,
    /// This node's id at the lb (`host:port`).
    id: String,
}

impl Registration {
    /// Registers `advertise_url` (e.g. `http://10.0.0.5:8081`) with the lb at `lb_url`.
    pub async fn register(
        lb_url: &str,
        token: &str,
        advertise_url: &str,
    ) -> anyhow::Result<Registration> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .context("building the registration client")?;
        let lb = lb_url.trim_end_matches('/').to_string();
        let resp = http
            .post(format!("{lb}/lb/backends"))
            .bearer_auth(token)
            .json(&json!({ "url": advertise_url }))
            .send()
            .await
            .with_context(|| format!("registering with {lb}"))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!("{lb} refused the registration ({status}): {body}");
        }
        let id = body["backend"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok(Registration {
            http,
            lb,
            token: token.to_string(),
            id,
        })
    }

    /// Asks the lb to send this node nothing new.
    pub async fn drain(&self) {
        self.call(
            reqwest::Method::POST,
            &format!("/lb/backends/{}/drain", self.id),
        )
        .await;
    }

    /// Removes this node from the lb.
    pub async fn deregister(&self) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/lb/backends/{}", self.id),
        )
        .await;
    }

    async fn call(&self, method: reqwest::Method, path: &str) {
        let sent = self
            .http
            .request(method, format!("{}{path}", self.lb))
            .bearer_auth(&self.token)
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {}
            Ok(resp) => {
                tracing::warn!(lb = %self.lb, status = %resp.status(), path, "lb refused a deregistration step")
            }
            Err(e) => {
                tracing::warn!(lb = %self.lb, error = %e, path, "lb unreachable for deregistration")
            }
        }
    }
}
