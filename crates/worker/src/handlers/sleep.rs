//! Simulated slow work.

use std::time::Duration;

use serde_json::{json, Value};

use crate::handler::Progress;

/// Progress is reported this many times over the sleep.
const STEPS: u64 = 20;

pub async fn run(input: &Value, progress: &Progress) -> Result<Value, String> {
    let ms = input
        .get("ms")
        .and_then(Value::as_u64)
        .ok_or_else(|| "input.ms must be a non-negative integer".to_string())?;
    progress.set(0);
    for step in 1..=STEPS {
        // Whole steps, with the remainder in the last one.
        let slice = if step == STEPS {
            ms - ms / STEPS * (STEPS - 1)
        } else {
            ms / STEPS
        };
        tokio::time::sleep(Duration::from_millis(slice)).await;
        progress.set((step * 100 / STEPS) as u8);
    }
    Ok(json!({ "slept_ms": ms }))
}
