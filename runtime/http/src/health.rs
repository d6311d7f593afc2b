//! `/health`, `/ping`, `/metrics`, and the answer for unknown routes.

use crate::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

/// `GET /health`: 200 `OK`.
pub async fn health() -> impl IntoResponse {
    ([("content-type", "text/plain; charset=utf-8")], "OK")
}

/// `GET|POST /ping`: the product and version.
pub async fn ping() -> impl IntoResponse {
    Json(json!({
        "product_name": "Sluice",
        "version": env!("CARGO_PKG_VERSION"),
        "process_id": std::process::id().to_string(),
    }))
}

/// Any other route: 404 `Not found`.
pub async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "Not found")
}

/// `GET /metrics`: the storage's and the processing engine's metrics, in the
/// OpenMetrics text format (one exposition: one `# EOF`, at the end).
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let storage = state.storage.metrics();
    let mut text = storage
        .strip_suffix("# EOF\n")
        .unwrap_or(&storage)
        .to_string();
    match &state.engine {
        Some(engine) => {
            // What the caches hold now, read at the scrape.
            let cache = engine.invoker.cache();
            let databases = state.storage.catalog().database_refs();
            let held = databases
                .iter()
                .map(|database| (database.name.clone(), cache.held_by(database.id)));
            let metrics = engine.records.metrics();
            metrics.set_cache_bytes(held);
            if let Some(counts) = engine.invoker.turn_counts() {
                let calls = databases.iter().filter_map(|database| {
                    let (running, waiting) = counts.get(&database.id)?;
                    Some((database.name.clone(), *running, *waiting))
                });
                metrics.set_calls(calls);
            }
            if let Some(stats) = engine.invoker.instance_stats() {
                metrics.set_instances(&stats);
            }
            metrics.set_wal_positions(&engine.triggers.wal_positions(None));
            text.push_str(&metrics.encode());
        }
        None => text.push_str("# EOF\n"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}
