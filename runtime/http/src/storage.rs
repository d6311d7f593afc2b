//! `DELETE /api/v3/configure/storage/unreferenced`: the admin's removal of the Parquet
//! files start-up found that nothing refers to (listed in `system.storage_problems`
//! of `_internal`), which the server never deletes on its own.

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

/// Deletes the unreferenced files; answers `{"removed": [PATH]}`.
pub async fn remove_unreferenced(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let removed = state
        .storage
        .remove_unreferenced()
        .await
        .map_err(ApiError::Conflict)?;
    tracing::info!(
        files = removed.len(),
        "the admin removed the unreferenced files"
    );
    Ok(Json(json!({ "removed": removed })))
}
