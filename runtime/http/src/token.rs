//! `/api/v3/configure/token…`: the admin token, tokens scoped to databases, listing and
//! deleting them. A token's text is in the response that creates it and nowhere else.

use crate::AppState;
use crate::configure::{catalog_error, json_body};
use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_catalog::{Access, Grant, NewToken, TokenRecord};
use std::collections::HashMap;

/// One permission of `POST /api/v3/configure/token`, in upstream's shape:
/// `{"resource_type": "db", "resource_names": ["a", "b"] | ["*"], "actions": ["read", "write"]}`,
/// with Sluice's own actions `manage` (the databases' triggers) and `invoke`, or
/// `{"resource_type": "system", "resource_names": ["metrics"], "actions": ["read"]}` (for a
/// Prometheus scraper).
#[derive(Debug, Serialize, Deserialize)]
struct Permission {
    resource_type: String,
    resource_names: Vec<String>,
    actions: Vec<String>,
}

#[derive(Deserialize)]
struct CreateToken {
    token_name: String,
    permissions: Vec<Permission>,
    /// Seconds from now until the token stops working; never when absent.
    expiry_secs: Option<u64>,
}

fn grant(permission: Permission) -> Result<Grant, ApiError> {
    if permission.resource_type == "system" {
        return match (&permission.resource_names[..], &permission.actions[..]) {
            ([name], [action]) if name == "metrics" && action == "read" => Ok(Grant::metrics()),
            _ => Err(ApiError::BadRequest(
                "a system permission is `metrics` with the action `read`".into(),
            )),
        };
    }
    if permission.resource_type != "db" {
        return Err(ApiError::BadRequest(format!(
            "unknown resource type `{}`: expected db or system",
            permission.resource_type
        )));
    }
    let mut grant = Grant {
        databases: permission.resource_names,
        read: false,
        write: false,
        manage: false,
        invoke: false,
        metrics: false,
    };
    for action in &permission.actions {
        match action.as_str() {
            "read" => grant.read = true,
            "write" => grant.write = true,
            "manage" => grant.manage = true,
            "invoke" => grant.invoke = true,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown action `{other}`: expected read, write, manage or invoke"
                )));
            }
        }
    }
    Ok(grant)
}

fn permissions(access: &Access) -> Value {
    match access {
        Access::Admin => json!("*"),
        Access::Scoped(grants) => grants
            .iter()
            .map(|g| {
                if g.metrics {
                    return json!({"resource_type": "system", "resource_names": ["metrics"], "actions": ["read"]});
                }
                json!({"resource_type": "db", "resource_names": g.databases, "actions": g.actions()})
            })
            .collect(),
    }
}

fn rfc3339(ms: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms).map_or(Value::Null, |t| {
        json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    })
}

fn describe(record: &TokenRecord) -> Value {
    json!({
        "id": record.id,
        "name": record.name,
        "created_at": rfc3339(record.created_at_ms),
        "expiry": record.expiry_ms.map_or(Value::Null, rfc3339),
        "permissions": permissions(&record.access),
    })
}

fn created(new: &NewToken) -> (StatusCode, Json<Value>) {
    let mut body = describe(&new.record);
    body["token"] = json!(new.token);
    (StatusCode::CREATED, Json(body))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `POST /api/v3/configure/token/admin`: creates the admin token; needs no token, and
/// works once (409 afterwards: regenerate instead).
pub async fn create_admin(
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new = state
        .storage
        .change_catalog(|c| c.change_tokens(|t| t.create_admin(now_ms())))
        .map_err(catalog_error)?;
    tracing::info!("the admin token was created");
    Ok(created(&new))
}

/// `POST /api/v3/configure/token/admin/regenerate`: a new admin token; the old one stops
/// working.
pub async fn regenerate_admin(
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new = state
        .storage
        .change_catalog(|c| c.change_tokens(|t| t.regenerate_admin()))
        .map_err(catalog_error)?;
    tracing::info!("the admin token was regenerated");
    Ok(created(&new))
}

/// `POST /api/v3/configure/token` with `{"token_name", "permissions": [...], "expiry_secs"?}`.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: CreateToken = json_body(&headers, &body)?;
    let grants = request
        .permissions
        .into_iter()
        .map(grant)
        .collect::<Result<Vec<_>, _>>()?;
    let now = now_ms();
    let expiry = match request.expiry_secs {
        None => None,
        Some(secs) => {
            let ms = i64::try_from(secs)
                .ok()
                .and_then(|s| s.checked_mul(1000))
                .and_then(|ms| now.checked_add(ms));
            Some(ms.ok_or_else(|| {
                ApiError::BadRequest(format!("expiry_secs {secs} is too far in the future"))
            })?)
        }
    };
    let new = state
        .storage
        .change_catalog(|c| {
            c.change_tokens(|t| t.create_scoped(&request.token_name, grants, now, expiry))
        })
        .map_err(catalog_error)?;
    Ok(created(&new))
}

/// `GET /api/v3/configure/token`: every token without its secret.
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(
        state
            .storage
            .catalog()
            .token_records()
            .iter()
            .map(describe)
            .collect(),
    )
}

/// `DELETE /api/v3/configure/token?token_name=NAME`.
pub async fn delete(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let name = crate::error::required(&params, "token_name")?;
    state
        .storage
        .change_catalog(|c| c.change_tokens(|t| t.delete(name)))
        .map_err(catalog_error)?;
    Ok(StatusCode::OK)
}
