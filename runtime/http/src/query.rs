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
use sluice_query::{QueryStream, Readable, ScalarValue, SchemaRef};
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
    // A token that manages the database without reading it sees its system tables.
    let readable = if access.can_manage(&database) && !access.can_read(&database) {
        Readable::SystemTables
    } else {
        crate::auth::require_read(access, &database)?;
        Readable::All
    };
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
    let mut rows = state
        .query
        .stream(&database, readable, &sql, params)
        .await?;
    // The first rows before the answer: most failures come before any row, and get
    // their status; a later one cuts the answer short.
    let first = rows.next().await.transpose()?;
    let body = if format == Format::Pretty {
        axum::body::Body::from(pretty(rows, first).await?)
    } else {
        let encoder = Encoder::new(
            format,
            first.as_ref().map_or(&rows.schema, |b| b.schema_ref()),
        )
        .map_err(ApiError::Internal)?;
        axum::body::Body::from_stream(streamed(rows, first, encoder))
    };
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
}

/// The largest result the `pretty` format lays out: it needs every row before it can
/// write the first, so its rows are held in memory, unlike the other formats'.
const MAX_PRETTY_BYTES: usize = 64 << 20;

/// The whole result as a text table.
async fn pretty(mut rows: QueryStream, first: Option<RecordBatch>) -> Result<Vec<u8>, ApiError> {
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut held = 0;
    let mut next = first.map(Ok);
    while let Some(batch) = next {
        let batch = batch?;
        rows.hold(&batch)?;
        held += batch.get_array_memory_size();
        if held > MAX_PRETTY_BYTES {
            return Err(ApiError::BadRequest(format!(
                "the result is over {} MiB, too large for the pretty format: use json, jsonl, \
                 csv or parquet, which are streamed",
                MAX_PRETTY_BYTES >> 20
            )));
        }
        batches.push(batch);
        next = rows.next().await;
    }
    let mut out = arrow::util::pretty::pretty_format_batches(&batches)
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .to_string()
        .into_bytes();
    out.push(b'\n');
    Ok(out)
}

/// The encoded rows as they come: `first`, then the rest of `rows`, each batch cut into
/// slices that are encoded and sent one at a time (a value shared by many rows, a
/// dictionary's, is written out for each of them). A failure after the first rows ends
/// the body early, which the client sees as a cut answer.
fn streamed(
    rows: QueryStream,
    first: Option<RecordBatch>,
    encoder: Encoder,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    struct State {
        rows: QueryStream,
        /// Slices of the current batch not sent yet.
        pending: std::collections::VecDeque<RecordBatch>,
        /// `None` once the body has ended.
        encoder: Option<Encoder>,
    }
    let cut = |batch: &RecordBatch| sluice_query::sizes::slices(batch, ENCODED_SLICE_BYTES);
    let state = State {
        rows,
        pending: first.as_ref().map(cut).unwrap_or_default().into(),
        encoder: Some(encoder),
    };
    futures::stream::unfold(state, move |mut state| async move {
        let mut encoder = state.encoder.take()?;
        let chunk = loop {
            if let Some(slice) = state.pending.pop_front() {
                break encoder.batch(&slice).map(|bytes| (bytes, Some(encoder)));
            }
            match state.rows.next().await {
                Some(Ok(batch)) => state.pending = cut(&batch).into(),
                Some(Err(error)) => break Err(error.to_string()),
                None => break encoder.finish().map(|bytes| (bytes, None)),
            }
        };
        match chunk {
            Ok((bytes, encoder)) => {
                state.encoder = encoder;
                Some((Ok(bytes), state))
            }
            Err(message) => {
                tracing::warn!("a query's answer was cut short: {message}");
                Some((Err(std::io::Error::other(message)), state))
            }
        }
    })
}

/// The most rows, by weight, encoded at once.
const ENCODED_SLICE_BYTES: u64 = 8 << 20;

/// Parquet row groups are written out once they hold this much.
const PARQUET_ROW_GROUP_BYTES: usize = 16 << 20;

/// Encodes rows batch by batch, holding no more than one batch's encoding (a row group,
/// for Parquet).
enum Encoder {
    Json {
        writer: arrow::json::ArrayWriter<Vec<u8>>,
        written: bool,
    },
    JsonLines(arrow::json::LineDelimitedWriter<Vec<u8>>),
    /// Whether the header has been written.
    Csv(bool),
    Parquet(Box<parquet::arrow::ArrowWriter<Vec<u8>>>),
}

impl Encoder {
    /// An encoder of `format` (not pretty) for rows of `schema`.
    fn new(format: Format, schema: &SchemaRef) -> Result<Self, String> {
        Ok(match format {
            Format::Json | Format::Pretty => Self::Json {
                writer: arrow::json::ArrayWriter::new(Vec::new()),
                written: false,
            },
            Format::JsonLines => Self::JsonLines(arrow::json::LineDelimitedWriter::new(Vec::new())),
            Format::Csv => Self::Csv(false),
            Format::Parquet => Self::Parquet(Box::new(
                parquet::arrow::ArrowWriter::try_new(Vec::new(), Arc::clone(schema), None)
                    .map_err(|e| e.to_string())?,
            )),
        })
    }

    /// The encoding of `batch`, as far as it can be written out yet.
    fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, String> {
        let text = |e: arrow::error::ArrowError| e.to_string();
        match self {
            Self::Json { writer, written } => {
                writer.write(batch).map_err(text)?;
                *written |= !writer.get_ref().is_empty();
                Ok(std::mem::take(writer.get_mut()).into())
            }
            Self::JsonLines(writer) => {
                writer.write(batch).map_err(text)?;
                Ok(std::mem::take(writer.get_mut()).into())
            }
            Self::Csv(header_written) => {
                if batch.num_rows() == 0 {
                    return Ok(Bytes::new());
                }
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(!*header_written)
                    .build(Vec::new());
                writer.write(batch).map_err(text)?;
                *header_written = true;
                Ok(writer.into_inner().into())
            }
            Self::Parquet(writer) => {
                writer.write(batch).map_err(|e| e.to_string())?;
                if writer.in_progress_size() >= PARQUET_ROW_GROUP_BYTES {
                    writer.flush().map_err(|e| e.to_string())?;
                }
                Ok(std::mem::take(writer.inner_mut()).into())
            }
        }
    }

    /// The end of the encoding.
    fn finish(self) -> Result<Bytes, String> {
        match self {
            Self::Json {
                mut writer,
                written,
            } => {
                writer.finish().map_err(|e| e.to_string())?;
                if !written {
                    return Ok(Bytes::from_static(b"[]"));
                }
                Ok(writer.into_inner().into())
            }
            Self::JsonLines(mut writer) => {
                writer.finish().map_err(|e| e.to_string())?;
                Ok(writer.into_inner().into())
            }
            Self::Csv(_) => Ok(Bytes::new()),
            Self::Parquet(writer) => writer
                .into_inner()
                .map(Bytes::from)
                .map_err(|e| e.to_string()),
        }
    }
}
