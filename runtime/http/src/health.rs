//! `/health`, `/ping`, and the answer for unknown routes.

use axum::Json;
use axum::http::StatusCode;
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
