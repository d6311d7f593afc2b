//! `POST /api/v3/write_lp`, `POST /api/v2/write`, `POST /write`.

use crate::error::{ApiError, V2Error};
use crate::{AppState, body};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;

use sluice_catalog::Access;
use sluice_lp::Precision;
use sluice_storage::{WriteError, WriteRequest};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Parameters of `/api/v3/write_lp`, each checked by hand so that a bad value gets a
/// message naming the parameter.
type Params = Query<HashMap<String, String>>;

fn flag(params: &HashMap<String, String>, name: &str, default: bool) -> Result<bool, ApiError> {
    match params.get(name).map(String::as_str) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(ApiError::BadRequest(format!(
            "invalid value `{other}` for `{name}`: expected true or false"
        ))),
    }
}

fn precision(params: &HashMap<String, String>, default: Precision) -> Result<Precision, ApiError> {
    params.get("precision").map_or(Ok(default), |p| {
        p.parse::<Precision>()
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    })
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// How a write is applied: what each API sets differently.
struct Options {
    precision: Precision,
    accept_partial: bool,
    no_sync: bool,
}

async fn write(
    state: &AppState,
    access: &Access,
    raw: Bytes,
    database: &str,
    options: Options,
) -> Result<StatusCode, ApiError> {
    crate::auth::require_write(access, database)?;
    let text = body::text(body::read(raw, state.max_request_bytes)?)?;
    let Options {
        precision,
        accept_partial,
        no_sync,
    } = options;
    let request = WriteRequest {
        database,
        body: &text,
        precision,
        accept_partial,
        no_sync,
        default_time_ns: now_ns(),
        create_database: true,
    };
    match state.storage.write_lp(request).await {
        Ok(outcome) if outcome.errors.is_empty() => Ok(StatusCode::NO_CONTENT),
        Ok(outcome) => Err(ApiError::Partial(outcome.errors)),
        Err(error @ WriteError::Durability(_)) => Err(ApiError::Internal(error.to_string())),
        Err(error) => Err(ApiError::Write(error)),
    }
}

/// `POST /api/v3/write_lp?db=&precision=&accept_partial=&no_sync=`: 204 once durable
/// (or at once with `no_sync=true`).
pub async fn write_v3(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Query(params): Params,
    raw: Bytes,
) -> Result<StatusCode, ApiError> {
    let database = crate::error::required(&params, "db")?;
    let options = Options {
        precision: precision(&params, Precision::Auto)?,
        accept_partial: flag(&params, "accept_partial", true)?,
        no_sync: flag(&params, "no_sync", false)?,
    };
    write(&state, &access, raw, database, options).await
}

/// `POST /api/v2/write?bucket=&precision=`: all or nothing, nanoseconds by default;
/// errors in the v2 shape `{"code", "message"}`.
pub async fn write_v2(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Query(params): Params,
    raw: Bytes,
) -> Result<StatusCode, V2Error> {
    let database = crate::error::required(&params, "bucket")?;
    let options = Options {
        precision: precision(&params, Precision::Nanosecond)?,
        accept_partial: false,
        no_sync: false,
    };
    Ok(write(&state, &access, raw, database, options).await?)
}

/// `POST /write?db=&rp=&precision=`: all or nothing, nanoseconds by default.
pub async fn write_v1(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Query(params): Params,
    raw: Bytes,
) -> Result<StatusCode, ApiError> {
    let database = crate::error::required(&params, "db")?;
    let database = match params.get("rp") {
        Some(rp) if !rp.is_empty() => format!("{database}/{rp}"),
        _ => database.clone(),
    };
    let options = Options {
        precision: precision(&params, Precision::Nanosecond)?,
        accept_partial: false,
        no_sync: false,
    };
    write(&state, &access, raw, &database, options).await
}
