//! `GET /cache/stats`: the shared cache's hits, misses and most read entries.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::{ApiError, AppState};

/// Entries listed, most read first.
const TOP: i64 = 20;

pub async fn stats(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let s = state.store.cache_stats(TOP).await?;
    let lookups = s.hits + s.misses;
    let hit_ratio = (lookups > 0).then(|| s.hits as f64 / lookups as f64);
    Ok(Json(json!({
        "entries": s.entries,
        "hits": s.hits,
        "misses": s.misses,
        "hit_ratio": hit_ratio,
        "top": s.top,
    })))
}
