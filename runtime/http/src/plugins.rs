//! `/api/v3/plugins/files` and `/api/v3/plugins/directory`: putting plugin code into the
//! plugin directory. Running triggers pick the change up at their next call (their warm
//! instances reload when a plugin's files change).
//!
//! The admin's uploads go into the shared directory (whatever `?db=` says, as upstream,
//! where every plugin is in one directory); a database token's into the area of the
//! database `?db=` names, which it must manage. A tenant changes the code of its own
//! triggers' plugins only, never a shared one.

use crate::AppState;
use crate::auth::{require_admin, require_manage};
use crate::configure::json_body;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use sluice_catalog::{Access, DbId, PluginArea, Quotas, Trigger};
use sluice_engine::plugin_dir::{PluginAreas, PluginDir, PluginDirError, PluginKind};
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

/// Where the plugins are, or the error upstream gives without a plugin directory.
pub(crate) fn plugin_areas(state: &AppState) -> Result<Arc<PluginAreas>, ApiError> {
    state.plugin_dir.clone().ok_or_else(|| {
        ApiError::BadRequest(
            "Plugin error: Node not configured with plugin directory (start the server with \
             --plugin-dir)"
                .into(),
        )
    })
}

/// The shared plugin directory, or the error upstream gives without one.
pub(crate) fn plugin_dir(state: &AppState) -> Result<Arc<PluginDir>, ApiError> {
    plugin_areas(state).map(|areas| Arc::clone(areas.shared()))
}

/// Whose plugin files and packages a request changes.
pub(crate) enum Owner {
    /// The server's shared ones: the admin's requests, whatever `?db=` says (as upstream,
    /// where a server has one plugin directory).
    Shared,
    /// Those of the database `?db=` names: a database token's requests, which must
    /// manage it.
    Database {
        /// Its name.
        name: String,
        /// Its id.
        id: DbId,
    },
}

/// Whose plugin files and packages a request with `access` and `?db=db` changes; `what`
/// names the shared thing a database token may not change.
pub(crate) fn owner(
    state: &AppState,
    access: &Access,
    db: Option<&String>,
    what: &str,
) -> Result<Owner, ApiError> {
    if access.is_admin() {
        return Ok(Owner::Shared);
    }
    let Some(db) = db else {
        return Err(ApiError::Forbidden(format!(
            "{what} needs the admin token; a database token names its database with ?db="
        )));
    };
    require_manage(access, db)?;
    let id = state
        .storage
        .catalog()
        .database_id(db)
        .ok_or_else(|| ApiError::NotFound(format!("Database not found {db}")))?;
    Ok(Owner::Database {
        name: db.clone(),
        id,
    })
}

/// A directory plugin files are written to, and the bytes of files it may hold.
struct Target {
    dir: Arc<PluginDir>,
    max_bytes: u64,
}

/// The area of `database`, within its plugin-bytes quota.
fn database_area(state: &AppState, name: &str, id: DbId) -> Result<Target, ApiError> {
    let areas = plugin_areas(state)?;
    let max_bytes = state
        .engine
        .as_ref()
        .map_or(Quotas::MAX.plugin_bytes, |engine| {
            engine.invoker.quotas_of(name).plugin_bytes
        });
    Ok(Target {
        dir: areas.database(id).map_err(dir_error)?,
        max_bytes,
    })
}

/// The shared plugin directory, without a quota.
fn shared_dir(state: &AppState) -> Result<Target, ApiError> {
    Ok(Target {
        dir: plugin_dir(state)?,
        max_bytes: u64::MAX,
    })
}

/// The directory an upload writes: the shared one for the admin, else the area of the
/// database `?db=` names.
fn target_dir(state: &AppState, access: &Access, db: Option<&String>) -> Result<Target, ApiError> {
    match owner(
        state,
        access,
        db,
        "uploading to the shared plugin directory",
    )? {
        Owner::Shared => shared_dir(state),
        Owner::Database { name, id } => database_area(state, &name, id),
    }
}

fn dir_error(error: PluginDirError) -> ApiError {
    match error {
        PluginDirError::Traversal(_)
        | PluginDirError::MissingInit(_)
        | PluginDirError::TooLarge { .. } => ApiError::BadRequest(format!("Plugin error: {error}")),
        PluginDirError::OverQuota { .. } => ApiError::Forbidden(format!("Plugin error: {error}")),
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

/// The plugin file of the trigger `name`, and the directory it is in: in the database
/// `db` when the request names one (which a database token must, with `manage` on it),
/// else in the first database that has such a trigger (the admin's). A database token
/// changes only plugins of its database's area.
fn trigger_plugin(
    state: &AppState,
    access: &Access,
    name: &str,
    db: Option<&String>,
) -> Result<(String, Target), ApiError> {
    match db {
        Some(db) => require_manage(access, db)?,
        None => require_admin(
            access,
            "the plugin of a trigger without naming its database",
        )?,
    }
    let catalog = state.storage.catalog();
    let databases = match db {
        Some(db) => vec![db.clone()],
        None => catalog.database_names(),
    };
    let found: Option<(String, Trigger)> = databases.iter().find_map(|db| {
        let trigger = catalog
            .triggers(db)?
            .into_iter()
            .find(|t| t.trigger_name == name)?;
        Some((db.clone(), trigger))
    });
    let (database, trigger) = found
        .ok_or_else(|| ApiError::NotFound(format!("Plugin error: Plugin not found: {name}")))?;
    let plugin = trigger.plugin_filename;
    if plugin.starts_with("gh:") {
        return Err(ApiError::BadRequest(format!(
            "Plugin error: trigger {name} runs `{plugin}` from the plugin repository; its code \
             cannot be replaced"
        )));
    }
    let target = match trigger.plugin_area {
        PluginArea::Shared => {
            require_admin(access, &format!("the shared plugin {plugin}"))?;
            shared_dir(state)?
        }
        PluginArea::Database => {
            let id = catalog
                .database_id(&database)
                .ok_or_else(|| ApiError::NotFound(format!("Database not found {database}")))?;
            database_area(state, &database, id)?
        }
    };
    Ok((plugin, target))
}

/// `POST /api/v3/plugins/files`: writes one file, creating its directories; an existing
/// file is replaced.
pub async fn upload_file(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let target = target_dir(&state, &access, params.get("db"))?;
    let request: PluginFileBody = json_body(&headers, &body)?;
    blocking(move || {
        let content = request.content.as_bytes();
        target
            .dir
            .write_file_within(&request.plugin_name, content, target.max_bytes)
    })
    .await?;
    Ok(StatusCode::OK)
}

/// `PUT /api/v3/plugins/files`: replaces the code of a trigger's plugin (`__init__.py`
/// for a package).
pub async fn update_file(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: PluginFileBody = json_body(&headers, &body)?;
    let (plugin, target) = trigger_plugin(&state, &access, &request.plugin_name, params.get("db"))?;
    blocking(move || {
        let file = match target.dir.kind(&plugin)? {
            Some(PluginKind::Package) => format!("{}/__init__.py", plugin.trim_end_matches('/')),
            Some(PluginKind::File) | None => plugin,
        };
        let content = request.content.as_bytes();
        target
            .dir
            .write_file_within(&file, content, target.max_bytes)
    })
    .await?;
    Ok(StatusCode::OK)
}

/// `PUT /api/v3/plugins/directory`: replaces a trigger's package with the files given,
/// at once.
pub async fn replace_directory(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: PackageBody = json_body(&headers, &body)?;
    let (plugin, target) = trigger_plugin(&state, &access, &request.plugin_name, params.get("db"))?;
    let files: Vec<(String, String)> = request
        .files
        .into_iter()
        .map(|f| (f.relative_path, f.content))
        .collect();
    let kind = {
        let (dir, plugin) = (Arc::clone(&target.dir), plugin.clone());
        blocking(move || dir.kind(&plugin)).await?
    };
    if kind == Some(PluginKind::File) {
        return Err(ApiError::BadRequest(format!(
            "Plugin error: the plugin of trigger {} is the single file {plugin}; replace it \
             with PUT /api/v3/plugins/files",
            request.plugin_name
        )));
    }
    blocking(move || {
        target
            .dir
            .replace_package_within(&plugin, &files, target.max_bytes)
    })
    .await?;
    Ok(StatusCode::OK)
}
