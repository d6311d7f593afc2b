//! `/api/v3/configure/database` (create, list, delete) and `/api/v3/configure/table`
//! (create).

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_catalog::{ColumnType, Error as CatalogError};
use std::collections::HashMap;

#[derive(Deserialize)]
struct CreateDatabase {
    db: String,
}

#[derive(Deserialize)]
struct CreateTable {
    db: String,
    table: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    fields: Vec<FieldDefinition>,
}

#[derive(Deserialize)]
struct FieldDefinition {
    name: String,
    #[serde(rename = "type")]
    field_type: String,
}

fn field_type(name: &str) -> Result<ColumnType, ApiError> {
    Ok(match name {
        "utf8" | "string" => ColumnType::String,
        "int64" | "int" => ColumnType::Int,
        "uint64" | "uint" => ColumnType::UInt,
        "float64" | "float" => ColumnType::Float,
        "bool" | "boolean" => ColumnType::Bool,
        other => {
            return Err(ApiError::BadRequest(format!(
                "invalid field type `{other}`: expected utf8, int64, uint64, float64 or bool"
            )));
        }
    })
}

/// The status of each catalog error.
pub fn catalog_error(error: CatalogError) -> ApiError {
    match error {
        CatalogError::InvalidDatabaseName(_)
        | CatalogError::InvalidTable(_)
        | CatalogError::InvalidToken(_)
        | CatalogError::InvalidQuota(_) => ApiError::BadRequest(error.to_string()),
        CatalogError::QuotaExceeded(_) => ApiError::Forbidden(error.to_string()),
        CatalogError::DatabaseNotFound(_)
        | CatalogError::TableNotFound { .. }
        | CatalogError::TokenNotFound(_)
        | CatalogError::TriggerNotFound(_) => ApiError::NotFound(error.to_string()),
        CatalogError::AlreadyExists
        | CatalogError::TokenExists(_)
        | CatalogError::TriggerRunning(_)
        | CatalogError::RequestPathInUse { .. } => ApiError::Conflict(error.to_string()),
        CatalogError::Io(message) => ApiError::Internal(message),
    }
}

/// Parses a JSON body, requiring a JSON content type.
pub fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence != "application/json" && !essence.ends_with("+json") {
        return Err(ApiError::UnsupportedMediaType(
            "unacceptable content-type, expected: application/json".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("serde json error: {e}")))
}

/// The body of `PUT /api/v3/configure/database`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateDatabase {
    db: String,
    /// The database's own quotas; those left out are the server's.
    quotas: sluice_catalog::QuotaOverrides,
}

/// `PUT /api/v3/configure/database` with `{"db": NAME, "quotas": {"triggers"?,
/// "plugin_bytes"?, "concurrent_invocations"?, "cache_bytes"?, "package_bytes"?,
/// "writes_per_invocation"?}}` (admin): gives the database its own quotas, replacing those
/// it had; 400 for a value of 0 or over the largest allowed.
pub async fn update_database(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: UpdateDatabase = json_body(&headers, &body)?;
    state
        .storage
        .change_catalog(|c| c.set_quotas(&request.db, request.quotas))
        .map_err(catalog_error)?;
    tracing::info!(database = %request.db, quotas = %request.quotas.describe(), "database quotas set");
    Ok(StatusCode::OK)
}

/// `POST /api/v3/configure/database` with `{"db": NAME}`.
pub async fn create_database(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: CreateDatabase = json_body(&headers, &body)?;
    state
        .storage
        .create_database(&request.db)
        .map_err(catalog_error)?;
    Ok(StatusCode::OK)
}

/// `GET /api/v3/configure/database`: `[{"iox::database": NAME}, ...]`.
pub async fn list_databases(State(state): State<AppState>) -> Json<Value> {
    let names = state.storage.catalog().database_names();
    Json(
        names
            .into_iter()
            .map(|name| json!({"iox::database": name}))
            .collect(),
    )
}

/// `DELETE /api/v3/configure/database?db=NAME`.
pub async fn delete_database(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let name = crate::error::required(&params, "db")?;
    state
        .storage
        .delete_database(name)
        .await
        .map_err(catalog_error)?;
    // Its triggers stop, and their caches go.
    state.catalog_change_in_effect().await;
    Ok(StatusCode::OK)
}

/// `POST /api/v3/configure/table` with
/// `{"db", "table", "tags": [NAME], "fields": [{"name", "type"}]}`.
pub async fn create_table(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: CreateTable = json_body(&headers, &body)?;
    let fields = request
        .fields
        .into_iter()
        .map(|field| field_type(&field.field_type).map(|t| (field.name, t)))
        .collect::<Result<Vec<_>, _>>()?;
    state
        .storage
        .create_table(&request.db, &request.table, &request.tags, &fields)
        .map_err(catalog_error)?;
    Ok(StatusCode::OK)
}
