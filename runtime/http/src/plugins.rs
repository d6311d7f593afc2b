//! `/api/v3/plugins/files` and `/api/v3/plugins/directory`: putting plugin code into the
//! plugin directory. Running triggers pick the change up at their next call (their warm
//! instances reload when a plugin's files change).

use crate::AppState;
use crate::configure::json_body;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use sluice_engine::plugin_dir::{PluginDir, PluginDirError, PluginKind};
use std::collections::HashMap;
use std::sync::Arc;

/// The body of `POST|PUT /api/v3/plugins/files`.
#[derive(Deserialize)]
struct PluginFileBody {
    /// POST: the file's path in the plugin directory; PUT: the name of the trigger whose
    /// plugin is replaced.
    plugin_name: String,
    content: String,
}

/// One file of `PUT /api/v3/plugins/directory`.
#[derive(Deserialize)]
struct PackageFile {
    relative_path: String,
    content: String,
}

/// The body of `PUT /api/v3/plugins/directory`.
#[derive(Deserialize)]
struct PackageBody {
    /// The name of the trigger whose package is replaced.
    plugin_name: String,
    files: Vec<PackageFile>,
}

/// The plugin directory, or the error upstream gives without one.
pub(crate) fn plugin_dir(state: &AppState) -> Result<Arc<PluginDir>, ApiError> {
    state.plugin_dir.clone().ok_or_else(|| {
        ApiError::BadRequest(
            "Plugin error: Node not configured with plugin directory (start the server with \
             --plugin-dir)"
                .into(),
        )
    })
}

fn dir_error(error: PluginDirError) -> ApiError {
    match error {
        PluginDirError::Traversal(_)
        | PluginDirError::MissingInit(_)
        | PluginDirError::TooLarge { .. } => ApiError::BadRequest(format!("Plugin error: {error}")),
        PluginDirError::Io { ref source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidFilename
            ) =>
        {
            ApiError::BadRequest(format!("Plugin error: {error}"))
        }
        PluginDirError::Io { .. } => ApiError::Internal(error.to_string()),
    }
}

/// Runs a filesystem change off the async threads.
async fn blocking<T: Send + 'static>(
    change: impl FnOnce() -> Result<T, PluginDirError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(change)
        .await
        .map_err(|e| ApiError::Internal(format!("plugin file task failed: {e}")))?
        .map_err(dir_error)
}

/// The plugin file of the trigger `name`: in the database `db` when the request names
/// one, else in the first database that has such a trigger.
fn trigger_plugin(state: &AppState, name: &str, db: Option<&String>) -> Result<String, ApiError> {
    let catalog = state.storage.catalog();
    let databases = match db {
        Some(db) => vec![db.clone()],
        None => catalog.database_names(),
    };
    let plugin = databases
        .iter()
        .flat_map(|db| catalog.triggers(db).unwrap_or_default())
        .find(|t| t.trigger_name == name)
        .map(|t| t.plugin_filename)
        .ok_or_else(|| ApiError::NotFound(format!("Plugin error: Plugin not found: {name}")))?;
    if plugin.starts_with("gh:") {
        return Err(ApiError::BadRequest(format!(
            "Plugin error: trigger {name} runs `{plugin}` from the plugin repository; its code \
             cannot be replaced"
        )));
    }
    Ok(plugin)
}

/// `POST /api/v3/plugins/files`: writes one file, creating its directories; an existing
/// file is replaced.
pub async fn upload_file(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: PluginFileBody = json_body(&headers, &body)?;
    let dir = plugin_dir(&state)?;
    blocking(move || dir.write_file(&request.plugin_name, request.content.as_bytes())).await?;
    Ok(StatusCode::OK)
}

/// `PUT /api/v3/plugins/files`: replaces the code of a trigger's plugin (`__init__.py`
/// for a package).
pub async fn update_file(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: PluginFileBody = json_body(&headers, &body)?;
    let dir = plugin_dir(&state)?;
    let plugin = trigger_plugin(&state, &request.plugin_name, params.get("db"))?;
    blocking(move || {
        let target = match dir.kind(&plugin)? {
            Some(PluginKind::Package) => format!("{}/__init__.py", plugin.trim_end_matches('/')),
            Some(PluginKind::File) | None => plugin,
        };
        dir.write_file(&target, request.content.as_bytes())
    })
    .await?;
    Ok(StatusCode::OK)
}

/// `PUT /api/v3/plugins/directory`: replaces a trigger's package with the files given,
/// at once.
pub async fn replace_directory(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: PackageBody = json_body(&headers, &body)?;
    let dir = plugin_dir(&state)?;
    let plugin = trigger_plugin(&state, &request.plugin_name, params.get("db"))?;
    let files: Vec<(String, String)> = request
        .files
        .into_iter()
        .map(|f| (f.relative_path, f.content))
        .collect();
    let kind = {
        let (dir, plugin) = (Arc::clone(&dir), plugin.clone());
        blocking(move || dir.kind(&plugin)).await?
    };
    if kind == Some(PluginKind::File) {
        return Err(ApiError::BadRequest(format!(
            "Plugin error: the plugin of trigger {} is the single file {plugin}; replace it \
             with PUT /api/v3/plugins/files",
            request.plugin_name
        )));
    }
    blocking(move || dir.replace_package(&plugin, &files)).await?;
    Ok(StatusCode::OK)
}
