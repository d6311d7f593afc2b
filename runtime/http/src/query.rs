//! `GET|POST /api/v3/query_sql`: SQL in, rows out as JSON, JSON lines, CSV, a table or
//! Parquet.

use crate::AppState;
use crate::configure::json_body;
use crate::error::ApiError;
use arrow::array::RecordBatch;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use sluice_catalog::Access;
use sluice_query::{ScalarValue, SchemaRef};
use std::collections::HashMap;
use std::sync::Arc;

/// Result formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An array of objects.
    Json,
    /// One object per line.
    JsonLines,
    /// Comma-separated, with a header line.
    Csv,
    /// A text table.
    Pretty,
    /// A Parquet file.
    Parquet,
}

impl Format {
    fn parse(name: &str) -> Result<Self, ApiError> {
        match name {
            "json" => Ok(Self::Json),
            "jsonl" | "json_lines" => Ok(Self::JsonLines),
            "csv" => Ok(Self::Csv),
            "pretty" => Ok(Self::Pretty),
            "parquet" => Ok(Self::Parquet),
            other => Err(ApiError::BadRequest(format!(
                "invalid format `{other}`: expected json, jsonl, csv, pretty or parquet"
            ))),
        }
    }

    /// The format an `Accept` header asks for.
    fn from_accept(headers: &HeaderMap) -> Result<Self, ApiError> {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("*/*");
        if accept.contains("application/json")
            || accept.contains("*/*")
            || accept.contains("text/html")
            || accept.is_empty()
        {
            Ok(Self::Json)
        } else if accept.contains("text/csv") {
            Ok(Self::Csv)
        } else if accept.contains("text/plain") {
            Ok(Self::Pretty)
        } else if accept.contains("application/jsonl") {
            Ok(Self::JsonLines)
        } else if accept.contains("application/vnd.apache.parquet") {
            Ok(Self::Parquet)
        } else {
            Err(ApiError::BadRequest(format!(
                "invalid mime type ({accept})"
            )))
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::JsonLines => "application/jsonl",
            Self::Csv => "text/csv",
            Self::Pretty => "text/plain; charset=utf-8",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// The body of `POST /api/v3/query_sql`.
#[derive(Debug, Deserialize)]
pub struct QueryRequest {
    db: Option<String>,
    q: Option<String>,
    format: Option<String>,
    #[serde(default)]
    params: Option<HashMap<String, Value>>,
}

/// `GET /api/v3/query_sql?db=&q=&format=&params=<json>`.
pub async fn query_get(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let params = match query.get("params") {
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| ApiError::BadRequest(format!("invalid params: {e}")))?,
        ),
        None => None,
    };
    let request = QueryRequest {
        db: query.get("db").cloned(),
        q: query.get("q").cloned(),
        format: query.get("format").cloned(),
        params,
    };
    run(&state, &access, &headers, request).await
}

/// `POST /api/v3/query_sql` with a JSON body `{db, q, format?, params?}`.
pub async fn query_post(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: QueryRequest = json_body(&headers, &body)?;
    run(&state, &access, &headers, request).await
}

fn scalar(name: &str, value: Value) -> Result<ScalarValue, ApiError> {
    match value {
        Value::String(s) => Ok(ScalarValue::Utf8(Some(s))),
        Value::Bool(b) => Ok(ScalarValue::Boolean(Some(b))),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Ok(ScalarValue::Int64(Some(i))),
            (None, Some(u), _) => Ok(ScalarValue::UInt64(Some(u))),
            (None, None, Some(f)) => Ok(ScalarValue::Float64(Some(f))),
            _ => Err(ApiError::BadRequest(format!(
                "parameter `{name}` is not a usable number"
            ))),
        },
        Value::Null => Ok(ScalarValue::Null),
        _ => Err(ApiError::BadRequest(format!(
            "parameter `{name}` must be a string, number, boolean or null"
        ))),
    }
}

async fn run(
    state: &AppState,
    access: &Access,
    headers: &HeaderMap,
    request: QueryRequest,
) -> Result<Response, ApiError> {
    let (database, sql) = match (request.db, request.q) {
        (Some(db), Some(q)) => (db, q),
        (None, Some(_)) => return Err(ApiError::BadRequest("missing query parameter 'db'".into())),
        (Some(_), None) => return Err(ApiError::BadRequest("missing query parameter 'q'".into())),
        (None, None) => {
            return Err(ApiError::BadRequest(
                "missing query parameters 'db' and 'q'".into(),
            ));
        }
    };
    crate::auth::require_read(access, &database)?;
    let format = match request.format {
        Some(name) => Format::parse(&name)?,
        None => Format::from_accept(headers)?,
    };
    let params = request
        .params
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| scalar(&name, value).map(|v| (name, v)))
        .collect::<Result<Vec<_>, _>>()?;
    let output = state.query.sql(&database, &sql, params).await?;
    let body = encode(format, &output.schema, &output.batches).map_err(ApiError::Internal)?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
}

/// Encodes rows of `schema` in `format`.
pub fn encode(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<u8>, String> {
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let mut out = Vec::new();
    match format {
        Format::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut out);
            writer.write_batches(&refs).map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
        }
        Format::JsonLines => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
            writer.write_batches(&refs).map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
        }
        Format::Csv => {
            if batches.iter().any(|b| b.num_rows() > 0) {
                let mut writer = arrow::csv::Writer::new(&mut out);
                for batch in batches {
                    writer.write(batch).map_err(|e| e.to_string())?;
                }
            }
        }
        Format::Pretty => {
            out = arrow::util::pretty::pretty_format_batches(batches)
                .map_err(|e| e.to_string())?
                .to_string()
                .into_bytes();
            out.push(b'\n');
        }
        Format::Parquet => {
            // The batches' own schema: it may differ from the plan's in nullability.
            let schema = batches
                .first()
                .map_or_else(|| Arc::clone(schema), RecordBatch::schema);
            let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None)
                .map_err(|e| e.to_string())?;
            for batch in batches {
                writer.write(batch).map_err(|e| e.to_string())?;
            }
            writer.close().map_err(|e| e.to_string())?;
        }
    }
    Ok(out)
}
