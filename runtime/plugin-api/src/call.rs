//! The input and output of one plugin invocation, mirroring the WIT `types` interface.

use std::sync::Arc;

/// Trigger arguments: `None` when the trigger has none, else the pairs in given order.
pub type TriggerArguments = Option<Vec<(String, String)>>;

/// The values of one column, one entry per row.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValues {
    /// Tag values.
    Tag(Vec<String>),
    /// String field values.
    String(Vec<String>),
    /// Signed integer field values.
    Int(Vec<i64>),
    /// Unsigned integer field values.
    UInt(Vec<u64>),
    /// Float field values.
    Float(Vec<f64>),
    /// Boolean field values.
    Boolean(Vec<bool>),
    /// Timestamps, nanoseconds since the Unix epoch (UTC).
    Time(Vec<i64>),
}

impl ColumnValues {
    /// Number of entries.
    pub fn len(&self) -> usize {
        match self {
            Self::Tag(v) | Self::String(v) => v.len(),
            Self::Int(v) | Self::Time(v) => v.len(),
            Self::UInt(v) => v.len(),
            Self::Float(v) => v.len(),
            Self::Boolean(v) => v.len(),
        }
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A named column. `present` is `None` when every row has a value; otherwise a row whose
/// flag is false has no value and its entry in `values` is a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// One value per row.
    pub values: ColumnValues,
    /// Which rows have a value, when not all do.
    pub present: Option<Vec<bool>>,
}

impl Column {
    /// A column in which every row has a value.
    pub fn dense(name: impl Into<String>, values: ColumnValues) -> Self {
        Self {
            name: name.into(),
            values,
            present: None,
        }
    }
}

/// The rows of one table in one WAL flush.
#[derive(Debug, Clone, PartialEq)]
pub struct TableBatch {
    /// Table (measurement) name.
    pub table_name: String,
    /// Number of rows; every column has this many entries.
    pub row_count: u32,
    /// Tags in first-seen order, then fields in first-seen order, then `time`.
    pub columns: Vec<Column>,
}

/// The rows a query returned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    /// Number of rows.
    pub row_count: u32,
    /// Columns in the result's order.
    pub columns: Vec<Column>,
}

/// An HTTP request for a request trigger.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HttpRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The path below `/api/v3/engine/`.
    pub path: String,
    /// Percent-decoded query parameters in order.
    pub query: Vec<(String, String)>,
    /// Lower-case header names and their values, without `authorization`.
    pub headers: Vec<(String, String)>,
    /// The request body, decompressed.
    pub body: Vec<u8>,
}

/// The response a request plugin produced.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    /// Status code as the plugin gave it (the HTTP layer maps invalid ones to 500).
    pub status: u16,
    /// Headers in the plugin's order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// One invocation's input.
#[derive(Debug, Clone)]
pub enum PluginCall {
    /// `process_writes` with the flush's table batches.
    Writes {
        /// The tables that passed the trigger's filter. Shared: one flush is delivered
        /// to every trigger of its database without copying its rows.
        batches: Arc<[TableBatch]>,
        /// Trigger arguments.
        args: TriggerArguments,
    },
    /// `process_scheduled_call` at a planned instant.
    Schedule {
        /// The planned instant, nanoseconds since the Unix epoch (UTC).
        call_time_ns: i64,
        /// Trigger arguments.
        args: TriggerArguments,
    },
    /// `process_request` for an HTTP request.
    Request {
        /// The request.
        request: HttpRequest,
        /// Trigger arguments.
        args: TriggerArguments,
    },
}

impl PluginCall {
    /// The Python name of the entry point this call runs.
    pub fn entry_point(&self) -> &'static str {
        match self {
            Self::Writes { .. } => "process_writes",
            Self::Schedule { .. } => "process_scheduled_call",
            Self::Request { .. } => "process_request",
        }
    }
}
