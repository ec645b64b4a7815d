//! Simulated slow work.

use std::time::Duration;

use serde_json::{json, Value};

pub async fn run(input: &Value) -> Result<Value, String> {
    let ms = input
        .get("ms")
        .and_then(Value::as_u64)
        .ok_or_else(|| "input.ms must be a non-negative integer".to_string())?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(json!({ "slept_ms": ms }))
}
