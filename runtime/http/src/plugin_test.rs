//! `POST /api/v3/plugin_test/wal` and `/schedule`: run a plugin from the plugin directory
//! once, on a fresh instance, and report its logs, the writes it would make and its
//! errors. Queries are real; nothing is written.

use crate::AppState;
use crate::auth::{require_manage, require_read};
use crate::configure::json_body;
use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use chrono::SecondsFormat;
use serde::Deserialize;
use sluice_catalog::{Access, DatabaseRef, DbId, Runtime};
use sluice_engine::dry_run::{DEFAULT_CACHE_NAME, DryRunReport, wal_test_call};
use sluice_engine::invoke::Admission;
use sluice_engine::schedule::next_cron_instant;
use sluice_plugin_api::{InvocationError, PluginCall, TriggerArguments};
use std::collections::BTreeMap;

/// The body of `POST /api/v3/plugin_test/wal`.
#[derive(Deserialize)]
struct WalTest {
    filename: String,
    database: String,
    input_lp: String,
    cache_name: Option<String>,
    input_arguments: Option<BTreeMap<String, String>>,
    /// Not upstream's: what runs the plugin.
    #[serde(default)]
    runtime: Runtime,
}

/// The body of `POST /api/v3/plugin_test/schedule`.
#[derive(Deserialize)]
struct ScheduleTest {
    filename: String,
    database: String,
    /// A cron expression of 6 or 7 fields, without `cron:`.
    schedule: Option<String>,
    cache_name: Option<String>,
    input_arguments: Option<BTreeMap<String, String>>,
    /// Not upstream's: what runs the plugin.
    #[serde(default)]
    runtime: Runtime,
}

fn arguments(input: Option<BTreeMap<String, String>>) -> TriggerArguments {
    input.map(|map| map.into_iter().collect())
}

/// A report of a run that did not start.
fn failed(error: String) -> DryRunReport {
    DryRunReport {
        trigger_time: None,
        log_lines: Vec::new(),
        database_writes: BTreeMap::new(),
        errors: vec![error],
        response: None,
    }
}

async fn run(
    state: &AppState,
    access: &Access,
    database: &str,
    filename: &str,
    (call, runtime): (PluginCall, Runtime),
    cache_name: Option<String>,
) -> Result<DryRunReport, ApiError> {
    crate::plugins::plugin_dir(state)?;
    crate::triggers::check_runtime(state, access, runtime)?;
    let Some(engine) = &state.engine else {
        return Err(ApiError::Internal(
            "the processing engine is not running".into(),
        ));
    };
    if filename.starts_with("gh:") {
        // Fetched anew for every test, as upstream.
        crate::triggers::check_plugin(state, access, database, filename).await?;
    }
    let (_, plugin) = crate::triggers::locate_plugin(state, access, database, filename)?;
    let cache_name = cache_name.unwrap_or_else(|| DEFAULT_CACHE_NAME.to_string());
    let database = DatabaseRef {
        id: charged_id(state, access, database)?,
        name: database.to_string(),
    };
    // Within the database's quota of invocations at once, as its triggers' calls.
    let _admitted = engine
        .invoker
        .admit(&database, None, Admission::Refuse)
        .await
        .map_err(|refused| ApiError::Busy(refused.to_string()))?;
    engine
        .invoker
        .dry_run(
            &database,
            (plugin, runtime),
            call,
            &cache_name,
            access.is_admin(),
        )
        .await
        .map_err(|error| match error {
            InvocationError::PluginFile(message) if message.starts_with("Plugin not found") => {
                ApiError::NotFound(format!("Plugin error: {message}"))
            }
            other => ApiError::BadRequest(format!("Plugin error: {other}")),
        })
}

/// Whose turns, CPU and caches a test run on `database` takes: its database's. One not
/// created yet has no id of its own. The admin's runs on such a name count against id
/// 0, held to the server's quotas, as upstream's WAL test may name any database; a
/// tenant's would share id 0 with every other tenant's, and one tenant's flood would
/// refuse another's runs, so they are refused until the database exists.
fn charged_id(state: &AppState, access: &Access, database: &str) -> Result<DbId, ApiError> {
    match state.storage.catalog().database_id(database) {
        Some(id) => Ok(id),
        None if access.is_admin() => Ok(DbId::default()),
        None => Err(ApiError::NotFound(format!(
            "database '{database}' does not exist: a test run is charged to its database, so \
             a token that is not the admin's tests only in one that exists (a write to it \
             creates it)"
        ))),
    }
}

/// `POST /api/v3/plugin_test/wal`: `process_writes` with `input_lp` as one flush's rows.
/// The database and its tables need not exist, for the admin ([`charged_id`]).
pub async fn wal(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<DryRunReport>, ApiError> {
    let request: WalTest = json_body(&headers, &body)?;
    require_manage(&access, &request.database)?;
    require_read(&access, &request.database)?;
    let call = wal_test_call(&request.input_lp, arguments(request.input_arguments))
        .map_err(ApiError::BadRequest)?;
    let report = run(
        &state,
        &access,
        &request.database,
        &request.filename,
        (call, request.runtime),
        request.cache_name,
    )
    .await?;
    Ok(Json(report))
}

/// `POST /api/v3/plugin_test/schedule`: `process_scheduled_call` at the schedule's next
/// instant (every second without one). The database must exist.
pub async fn schedule(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<DryRunReport>, ApiError> {
    let request: ScheduleTest = json_body(&headers, &body)?;
    require_manage(&access, &request.database)?;
    require_read(&access, &request.database)?;
    if !state.storage.catalog().has_database(&request.database) {
        return Ok(Json(failed("couldn't find db".into())));
    }
    let expression = request.schedule.as_deref().unwrap_or("* * * * * *");
    let at = match next_cron_instant(expression) {
        Ok(at) => at,
        Err(error) => return Ok(Json(failed(format!("error executing plugin: {error}")))),
    };
    let call = PluginCall::Schedule {
        call_time_ns: at.timestamp_nanos_opt().unwrap_or_default(),
        args: arguments(request.input_arguments),
    };
    let mut report = run(
        &state,
        &access,
        &request.database,
        &request.filename,
        (call, request.runtime),
        request.cache_name,
    )
    .await?;
    report.trigger_time = Some(at.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    Ok(Json(report))
}
