//! What the Sluice engine and its plugin executors say to each other.
//!
//! The engine decides *when* a plugin runs and with what input; an executor (the
//! WebAssembly sandbox, or the native baseline) decides *how*. They meet here, in a crate
//! with no engine or runtime dependency:
//!
//! - [`PluginCall`]: the input of one invocation: table batches as typed columns, a call
//!   time, a request.
//! - [`HostServices`]: what a running plugin may ask of the server (log, query, write,
//!   cache, outbound HTTP), implemented by the engine for each trigger.
//! - [`Limits`]: the per-invocation budget an executor enforces (and a trigger's
//!   [`LimitOverrides`] of it), and [`LimitKind`] to name the one that was hit.
//! - [`PluginExecutor`]: runs a call and reports [`Invocation`] or [`InvocationError`].
//!
//! ```
//! use sluice_plugin_api::{Column, ColumnValues, TableBatch};
//! let batch = TableBatch {
//!     table_name: "cpu".into(),
//!     row_count: 2,
//!     columns: vec![Column::dense("usage", ColumnValues::Float(vec![0.5, 0.7]))],
//! };
//! assert_eq!(batch.columns[0].values.len(), 2);
//! ```

mod call;
mod cpu;
mod executor;
mod host;
mod limits;
mod outbound;
mod source;

pub use call::{
    Column, ColumnValues, HttpRequest, HttpResponse, PluginCall, QueryResult, TableBatch,
    TriggerArguments,
};
pub use cpu::{CpuClock, cpu_timed, thread_cpu_time};
pub use executor::{
    InstanceStats, Invocation, InvocationError, PluginExecutor, PluginRef, WarmPool,
};
pub use host::{BoxFuture, CallUsage, HostServices, LogLevel};
pub use limits::{LimitError, LimitKind, LimitOverrides, Limits, size_text};
pub use outbound::{
    NO_EGRESS, OutboundFailure, OutboundFailureKind, OutboundRequest, OutboundResponse,
};
pub use source::{DATABASE_PACKAGES_DIR, PACKAGES_DIR, PluginSource, inside_plugin_dir};
