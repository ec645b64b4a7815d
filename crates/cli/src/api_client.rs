//! The commands that talk to a running cluster over its HTTP API (`weir
//! status`, `weir queues`): one client, a key presented when given, and
//! weir's JSON errors turned into one readable line.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::Value;

/// A client presenting `api_key` (if any) as `Authorization: Bearer`.
pub fn client(api_key: Option<&str>, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut headers = HeaderMap::new();
    if let Some(key) = api_key {
        let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| anyhow::anyhow!("api-key: not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .default_headers(headers)
        .build()?)
}

/// Sends `req`; its JSON answer, or an error saying what weir answered
/// (`409 lease_lost: …`).
pub async fn call(req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let resp = req.send().await?;
    let status = resp.status();
    let url = resp.url().clone();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let error = &body["error"];
    match (error["code"].as_str(), error["message"].as_str()) {
        (Some(code), Some(message)) => anyhow::bail!("{} {code}: {message}", status.as_u16()),
        _ => anyhow::bail!("{url} answered {status}"),
    }
}
