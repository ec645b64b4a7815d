//! `GET /cache/stats`: the shared cache's hits, misses and most read entries.

use weir_core::{Store, StoreError};

use crate::schema::CacheStatsView;
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::Json;

/// Entries listed, most read first.
const TOP: i64 = 20;

#[utoipa::path(get, path = "/cache/stats", tag = "cache",
    responses((status = 200, description = "Cache counters and the most read entries", body = CacheStatsView)))]
pub async fn stats(State(state): State<AppState>) -> Result<Json<CacheStatsView>, ApiError> {
    Ok(Json(cache_stats(state.store.as_ref()).await?))
}

/// The cache's counters and most read entries; shared with `weir status
/// --database-url`.
pub async fn cache_stats(store: &dyn Store) -> Result<CacheStatsView, StoreError> {
    let s = store.cache_stats(TOP).await?;
    let lookups = s.hits + s.misses;
    let hit_ratio = (lookups > 0).then(|| s.hits as f64 / lookups as f64);
    Ok(CacheStatsView {
        entries: s.entries,
        hits: s.hits,
        misses: s.misses,
        hit_ratio,
        top: s.top,
    })
}
