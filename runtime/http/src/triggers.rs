//! `/api/v3/configure/processing_engine_trigger…`: create, delete, enable and disable
//! triggers. Each change is in the catalog (and on disk) before the answer.

use crate::AppState;
use crate::auth::require_manage;
use crate::configure::{catalog_error, json_body};
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sluice_catalog::Error as CatalogError;
use sluice_catalog::{
    Access, ErrorBehavior, HostGrant, LimitOverrides, PluginArea, PluginType, Quotas, Reach,
    Runtime, Trigger, TriggerId, TriggerSettings, TriggerSpec, WalStart,
};
use sluice_engine::plugin_dir::repository_copy;
use sluice_plugin_api::PluginRef;
use std::collections::{BTreeMap, HashMap};

/// `trigger_settings` of a create request.
#[derive(Deserialize)]
struct Settings {
    run_async: bool,
    error_behavior: ErrorBehavior,
    /// Not upstream's: see [`TriggerSettings::max_concurrency`].
    #[serde(default)]
    max_concurrency: Option<u64>,
    /// Not upstream's: see [`TriggerSettings::wal_start`].
    #[serde(default)]
    wal_start: WalStart,
}

/// The body of `POST /api/v3/configure/processing_engine_trigger`: every field but
/// `trigger_arguments` is required, as upstream.
#[derive(Deserialize)]
struct CreateTrigger {
    db: String,
    plugin_filename: String,
    trigger_name: String,
    trigger_specification: String,
    trigger_settings: Settings,
    #[serde(default)]
    trigger_arguments: Option<BTreeMap<String, String>>,
    disabled: bool,
    /// Not upstream's: the other databases the plugin may use, narrowing what the
    /// creator's token allows.
    #[serde(default)]
    granted_databases: Vec<String>,
    /// Not upstream's: where the plugin may send HTTP requests, `[scheme://]host:port`
    /// each, within the server's `--egress-allow`.
    #[serde(default)]
    allowed_hosts: Vec<String>,
    /// Not upstream's: a request trigger anyone may call, without a token.
    #[serde(default)]
    public: bool,
    /// Not upstream's: the trigger's own limits, named as `sluice serve`'s flags.
    #[serde(default)]
    limits: LimitsRequest,
    /// Not upstream's: what runs the plugin, `wasm` (the default) or `pyo3`.
    #[serde(default)]
    runtime: Runtime,
}

/// `limits` of a create request, named as `sluice serve`'s flags; each one missing is
/// the server's. The command line sends the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    /// CPU time, for example `200ms` or `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time: Option<String>,
    /// Linear memory, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_mib: Option<u64>,
    /// For example `500ms` or `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time: Option<String>,
    /// Log lines per invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_lines: Option<u64>,
    /// Bytes of log text per invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_bytes: Option<u64>,
    /// Line-protocol bytes written per invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes_written: Option<u64>,
    /// Response body bytes of a request plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    /// Bytes of one query result handed to the plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_query_result_bytes: Option<u64>,
    /// Bytes of one cached value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cache_value_bytes: Option<u64>,
    /// Bytes of the trigger's own cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cache_bytes: Option<u64>,
    /// Files an instance may hold open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open_files: Option<u64>,
    /// Outbound HTTP requests per invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_http_requests: Option<u64>,
    /// Bytes of one outbound request's response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_http_response_bytes: Option<u64>,
    /// Bytes of one outbound request's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_http_request_bytes: Option<u64>,
    /// How long one outbound request may take, for example `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_timeout: Option<String>,
    /// Bytes an invocation may write in its `/tmp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tmp_bytes: Option<u64>,
}

impl LimitsRequest {
    /// The request for `overrides`.
    pub fn new(overrides: &LimitOverrides) -> Self {
        Self {
            cpu_time: overrides.cpu_time_ms.map(duration_text),
            // Rounded up: a limit of part of a MiB is not asked for by MiB.
            memory_limit_mib: overrides.memory_bytes.map(|b| b.div_ceil(1 << 20)),
            wall_time: overrides.wall_time_ms.map(duration_text),
            max_log_lines: overrides.log_lines,
            max_log_bytes: overrides.log_bytes,
            max_bytes_written: overrides.bytes_written,
            max_response_bytes: overrides.response_bytes,
            max_query_result_bytes: overrides.query_result_bytes,
            max_cache_value_bytes: overrides.cache_value_bytes,
            max_cache_bytes: overrides.cache_bytes,
            max_open_files: overrides.open_files,
            max_http_requests: overrides.http_requests,
            max_http_response_bytes: overrides.http_response_bytes,
            max_http_request_bytes: overrides.http_request_bytes,
            http_timeout: overrides.http_timeout_ms.map(duration_text),
            max_tmp_bytes: overrides.tmp_bytes,
        }
    }

    /// The overrides this request asks for.
    ///
    /// # Errors
    ///
    /// A CPU time, wall time or HTTP time-out that is not a duration or is under 1 ms,
    /// or a memory limit that does not fit in bytes.
    pub fn overrides(self) -> Result<LimitOverrides, String> {
        let cpu_time_ms = milliseconds("cpu_time", self.cpu_time)?;
        let wall_time_ms = milliseconds("wall_time", self.wall_time)?;
        let http_timeout_ms = milliseconds("http_timeout", self.http_timeout)?;
        let memory_bytes = match self.memory_limit_mib {
            None => None,
            Some(mib) => Some(
                mib.checked_mul(1 << 20)
                    .ok_or_else(|| format!("memory_limit_mib {mib} is too large"))?,
            ),
        };
        Ok(LimitOverrides {
            cpu_time_ms,
            memory_bytes,
            wall_time_ms,
            log_lines: self.max_log_lines,
            log_bytes: self.max_log_bytes,
            bytes_written: self.max_bytes_written,
            response_bytes: self.max_response_bytes,
            query_result_bytes: self.max_query_result_bytes,
            cache_value_bytes: self.max_cache_value_bytes,
            cache_bytes: self.max_cache_bytes,
            open_files: self.max_open_files,
            http_requests: self.max_http_requests,
            http_response_bytes: self.max_http_response_bytes,
            http_request_bytes: self.max_http_request_bytes,
            http_timeout_ms,
            tmp_bytes: self.max_tmp_bytes,
        })
    }
}

/// `ms` milliseconds as a duration is written in a request: `1s 500ms`.
fn duration_text(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// The duration `text` of the limit `name`, in milliseconds.
fn milliseconds(name: &str, text: Option<String>) -> Result<Option<u64>, String> {
    let Some(text) = text else {
        return Ok(None);
    };
    let duration = text
        .parse::<humantime::Duration>()
        .map_err(|e| format!("{name} `{text}`: {e}"))?;
    if duration.as_millis() == 0 && !duration.is_zero() {
        return Err(format!("{name} `{text}` is under 1ms"));
    }
    Ok(Some(
        u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
    ))
}

/// The JSON body of `DELETE /api/v3/configure/processing_engine_trigger`.
#[derive(Deserialize)]
struct DeleteTrigger {
    db: String,
    trigger_name: String,
    #[serde(default)]
    force: bool,
}

/// 403 unless a trigger created with `access` may be granted `granted`: a database token
/// may grant its trigger only databases it may query or write itself (the trigger then
/// does with them what the token may), so that no trigger reaches further than its
/// creator.
fn check_grants(access: &Access, granted: &[String]) -> Result<(), ApiError> {
    match granted
        .iter()
        .find(|db| !access.can_read(db) && !access.can_write(db))
    {
        None => Ok(()),
        Some(database) => Err(ApiError::Forbidden(format!(
            "the token may not grant database `{database}` to a trigger: it may neither \
             query nor write it"
        ))),
    }
}

/// Where the plugin `filename` of a trigger on `database` is, and the plugin: for the
/// admin, in the shared directory; for a database token, in the database's area when it
/// holds it, else the shared directory. A `gh:` plugin is the shared copy.
pub(crate) fn locate_plugin(
    state: &AppState,
    access: &Access,
    database: &str,
    filename: &str,
) -> Result<(PluginArea, PluginRef), ApiError> {
    let areas = crate::plugins::plugin_areas(state)?;
    let id = state.storage.catalog().database_id(database);
    let area = match id {
        Some(id) if !access.is_admin() => areas.locate(id, filename),
        _ => PluginArea::Shared,
    };
    let tenants = !access.is_admin();
    Ok((
        area,
        areas.plugin(area, id.unwrap_or_default(), filename, tenants),
    ))
}

/// Checks that the plugin of a trigger on `database` can be read, and says where it is
/// ([`locate_plugin`]); a `gh:` plugin is fetched from the plugin repository into the
/// shared directory first.
pub(crate) async fn check_plugin(
    state: &AppState,
    access: &Access,
    database: &str,
    filename: &str,
) -> Result<PluginArea, ApiError> {
    if let Some(path) = filename.strip_prefix("gh:") {
        let Some(repo) = &state.plugin_repo else {
            return Err(ApiError::BadRequest(format!(
                "Plugin error: `{filename}`: this server has no plugin repository"
            )));
        };
        let dir = crate::plugins::plugin_dir(state)?;
        // A tenant fetches a copy the server lacks, never a fresh one over the copy the
        // admin's triggers run.
        let kept = repository_copy(path)
            .and_then(|copy| dir.kind(&copy).ok().flatten())
            .is_some();
        if !kept || access.is_admin() {
            repo.fetch_into(path, &dir).await?;
        }
        return Ok(PluginArea::Shared);
    }
    let (area, plugin) = locate_plugin(state, access, database, filename)?;
    match plugin.read() {
        Ok(_) => Ok(area),
        Err(error) => {
            let message = format!("Plugin error: {error}");
            Err(if message.contains("Plugin not found") {
                ApiError::NotFound(message)
            } else {
                ApiError::BadRequest(message)
            })
        }
    }
}

/// `POST /api/v3/configure/processing_engine_trigger`.
pub async fn create(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: CreateTrigger = json_body(&headers, &body)?;
    require_manage(&access, &request.db)?;
    check_grants(&access, &request.granted_databases)?;
    check_fields(&request)?;
    let spec = TriggerSpec::parse(&request.trigger_specification)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Some(allowed) = &state.allowed_triggers
        && !allowed.contains(&spec.plugin_type())
    {
        return Err(ApiError::BadRequest(format!(
            "invalid request: server is configured to reject {} plugin triggers",
            spec.plugin_type()
        )));
    }
    let allowed_hosts = egress_grants(&state, &request.allowed_hosts)?;
    let plugin_area = check_plugin(&state, &access, &request.db, &request.plugin_filename).await?;
    let invalid = |e: String| ApiError::BadRequest(format!("invalid limits: {e}"));
    let limits = request.limits.overrides().map_err(invalid)?;
    check_trigger_runtime(
        &state,
        &access,
        (request.runtime, &request.allowed_hosts),
        &limits,
    )?;
    if let Some(engine) = &state.engine {
        let effective = engine
            .invoker
            .limits_for(&limits)
            .map_err(|e| invalid(e.to_string()))?;
        // A tenant may tighten its triggers' limits, never loosen them.
        let over = effective.first_over(engine.invoker.server_limits());
        if let (Some(name), false) = (over, access.is_admin()) {
            return Err(ApiError::Forbidden(format!(
                "a database token may not raise a trigger's {name} limit over the server's"
            )));
        }
    }
    if request.trigger_settings.wal_start != WalStart::Head
        && spec.plugin_type() != PluginType::WalRows
    {
        return Err(ApiError::BadRequest(
            "wal_start applies only to WAL triggers (table:NAME or all_tables)".into(),
        ));
    }
    if request.public && spec.plugin_type() != PluginType::Request {
        return Err(ApiError::BadRequest(
            "only a request trigger can be public".into(),
        ));
    }
    let trigger = Trigger {
        id: TriggerId::default(),
        trigger_name: request.trigger_name,
        plugin_filename: request.plugin_filename,
        plugin_area,
        trigger: spec,
        trigger_settings: TriggerSettings {
            run_async: request.trigger_settings.run_async,
            error_behavior: request.trigger_settings.error_behavior,
            max_concurrency: request.trigger_settings.max_concurrency,
            wal_start: request.trigger_settings.wal_start,
        },
        trigger_arguments: request.trigger_arguments,
        disabled: request.disabled,
        granted_databases: request.granted_databases,
        allowed_hosts,
        reach: Reach::Creator(access.clone()),
        public: request.public,
        limits,
        runtime: request.runtime,
    };
    let admin = access.is_admin();
    let max_triggers = state
        .engine
        .as_ref()
        .map_or(Quotas::MAX.triggers, |engine| {
            engine.invoker.quotas_of(&request.db).triggers
        });
    state
        .storage
        .change_catalog(|c| c.create_trigger_within(&request.db, trigger, max_triggers))
        .map_err(|error| match error {
            // A tenant learns no other database's name from a path in use.
            CatalogError::RequestPathInUse { path, .. } if !admin => ApiError::Conflict(format!(
                "request path '{path}' is already served by another trigger"
            )),
            other => catalog_error(other),
        })?;
    state.catalog_change_in_effect().await;
    Ok(StatusCode::OK)
}

/// 403 unless the admin asks for the pyo3 runtime (it has no sandbox); 400 unless the
/// server runs it.
pub(crate) fn check_runtime(
    state: &AppState,
    access: &Access,
    runtime: Runtime,
) -> Result<(), ApiError> {
    if runtime.is_wasm() {
        return Ok(());
    }
    if !access.is_admin() {
        return Err(ApiError::Forbidden(
            "only the admin token may run plugins on the pyo3 runtime: it has no sandbox".into(),
        ));
    }
    let runs = state
        .engine
        .as_ref()
        .is_some_and(|engine| engine.invoker.runs(runtime));
    if !runs {
        return Err(ApiError::BadRequest(
            "the pyo3 runtime is not enabled on this server: start it with \
             --plugin-runtimes wasm,pyo3"
                .into(),
        ));
    }
    Ok(())
}

/// [`check_runtime`], and 400 if a trigger on `runtime` asks for what it cannot do.
fn check_trigger_runtime(
    state: &AppState,
    access: &Access,
    (runtime, allowed_hosts): (Runtime, &[String]),
    limits: &LimitOverrides,
) -> Result<(), ApiError> {
    check_runtime(state, access, runtime)?;
    if runtime.is_wasm() {
        return Ok(());
    }
    if let Some(name) = limits.sandbox_only() {
        return Err(ApiError::BadRequest(format!(
            "the pyo3 runtime cannot enforce a {name} limit: it runs plugins without a \
             sandbox. Create the trigger without it, or on the wasm runtime"
        )));
    }
    if !allowed_hosts.is_empty() {
        return Err(ApiError::BadRequest(
            "allowed_hosts is for the sandbox: a plugin on the pyo3 runtime reaches the \
             network as the server does"
                .into(),
        ));
    }
    Ok(())
}

/// The longest trigger name, in bytes.
const MAX_TRIGGER_NAME: usize = 255;
/// The most bytes of a trigger's arguments, keys and values together: they live in the
/// catalog, which every change rewrites.
const MAX_ARGUMENT_BYTES: usize = 64 << 10;
/// The most databases a trigger may be granted.
const MAX_GRANTS: usize = 100;

/// 400 for a trigger name that is empty, too long or holds control characters, and for
/// arguments or grants past their bounds.
fn check_fields(request: &CreateTrigger) -> Result<(), ApiError> {
    let name = &request.trigger_name;
    if name.trim().is_empty() {
        return Err(ApiError::BadRequest("trigger_name is empty".into()));
    }
    if name.len() > MAX_TRIGGER_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "trigger_name must be at most {MAX_TRIGGER_NAME} bytes, without control characters"
        )));
    }
    let arguments: usize = request
        .trigger_arguments
        .iter()
        .flatten()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    if arguments > MAX_ARGUMENT_BYTES {
        return Err(ApiError::BadRequest(format!(
            "trigger_arguments hold {arguments} bytes; at most {MAX_ARGUMENT_BYTES} are allowed"
        )));
    }
    let most = sluice_catalog::Quotas::MAX.concurrent_invocations;
    if let Some(max) = request.trigger_settings.max_concurrency
        && !(1..=most).contains(&max)
    {
        return Err(ApiError::BadRequest(format!(
            "max_concurrency must be from 1 to {most}, not {max}"
        )));
    }
    if request.granted_databases.len() > MAX_GRANTS {
        return Err(ApiError::BadRequest(format!(
            "a trigger may be granted at most {MAX_GRANTS} databases"
        )));
    }
    Ok(())
}

/// The most destinations a trigger may be granted.
const MAX_HOST_GRANTS: usize = 100;

/// The egress grants `texts` asks for: 400 for one malformed, or outside the server's
/// allow-list (which binds the admin too: it is the operator's word on where the
/// machine may connect).
fn egress_grants(state: &AppState, texts: &[String]) -> Result<Vec<HostGrant>, ApiError> {
    if texts.len() > MAX_HOST_GRANTS {
        return Err(ApiError::BadRequest(format!(
            "a trigger may be granted at most {MAX_HOST_GRANTS} hosts"
        )));
    }
    let grants = texts
        .iter()
        .map(|text| text.parse::<HostGrant>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if grants.is_empty() {
        return Ok(grants);
    }
    let Some(engine) = &state.engine else {
        return Err(ApiError::BadRequest(
            "the processing engine is off: no host can be granted".into(),
        ));
    };
    let egress = engine.invoker.egress();
    if egress.allows_nothing() {
        return Err(ApiError::BadRequest(
            "the server allows plugins no outbound HTTP: its egress allow-list \
             (--egress-allow) is empty"
                .into(),
        ));
    }
    // The list itself is not shown: it may name others' destinations.
    if let Some(outside) = egress.first_outside(&grants) {
        return Err(ApiError::BadRequest(format!(
            "allowed host `{outside}` is not within the server's egress allow-list \
             (--egress-allow)"
        )));
    }
    Ok(grants)
}

/// `DELETE /api/v3/configure/processing_engine_trigger?db=&trigger_name=&force=` or with
/// the JSON body `{db, trigger_name, force?}`.
pub async fn delete(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request = if params.is_empty() {
        json_body::<DeleteTrigger>(&headers, &body)?
    } else {
        let force = match params.get("force").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "invalid value `{other}` for `force`: expected true or false"
                )));
            }
        };
        DeleteTrigger {
            db: crate::error::required(&params, "db")?.clone(),
            trigger_name: crate::error::required(&params, "trigger_name")?.clone(),
            force,
        }
    };
    require_manage(&access, &request.db)?;
    state
        .storage
        .change_catalog(|c| c.delete_trigger(&request.db, &request.trigger_name, request.force))
        .map_err(catalog_error)?;
    state.catalog_change_in_effect().await;
    Ok(StatusCode::OK)
}

async fn set_disabled(
    state: &AppState,
    access: &Access,
    params: &HashMap<String, String>,
    disabled: bool,
) -> Result<StatusCode, ApiError> {
    let database = crate::error::required(params, "db")?;
    require_manage(access, database)?;
    let name = crate::error::required(params, "trigger_name")?;
    // A trigger on the pyo3 runtime runs without a sandbox: only the admin turns it on
    // (again, after it was turned off, perhaps for what it did).
    let native = state
        .storage
        .catalog()
        .triggers(database)
        .unwrap_or_default()
        .iter()
        .any(|t| t.trigger_name == *name && !t.runtime.is_wasm());
    if native && !disabled && !access.is_admin() {
        return Err(ApiError::Forbidden(
            "only the admin token may enable a trigger on the pyo3 runtime: it runs without \
             a sandbox"
                .into(),
        ));
    }
    state
        .storage
        .change_catalog(|c| c.set_trigger_disabled(database, name, disabled))
        .map_err(catalog_error)?;
    state.catalog_change_in_effect().await;
    Ok(StatusCode::OK)
}

/// `POST /api/v3/configure/processing_engine_trigger/enable?db=&trigger_name=`: 200 also
/// when it is enabled already.
pub async fn enable(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    set_disabled(&state, &access, &params, false).await
}

/// `POST /api/v3/configure/processing_engine_trigger/disable?db=&trigger_name=`: 200 also
/// when it is disabled already.
pub async fn disable(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    set_disabled(&state, &access, &params, true).await
}
