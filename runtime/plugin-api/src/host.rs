//! What a running plugin may ask of the server.

use crate::QueryResult;
use crate::{NO_EGRESS, OutboundFailure, OutboundFailureKind, OutboundRequest, OutboundResponse};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed, sendable future: lets [`HostServices`] be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Severity of a plugin log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogLevel {
    /// `influxdb3_local.info`
    Info,
    /// `influxdb3_local.warn`
    Warn,
    /// `influxdb3_local.error`
    Error,
}

impl LogLevel {
    /// `INFO`, `WARN` or `ERROR`, as the log table and dry-run output spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
        }
    }
}

/// The server side of the plugin API, for one trigger (or one test run).
///
/// An executor calls these while a plugin runs, after enforcing its own limits (log
/// lines, bytes written). Errors are `String`s because they go back to the plugin as
/// its exception message: they must read well to the plugin's author.
pub trait HostServices: Send + Sync {
    /// Records a log line.
    fn log(&self, level: LogLevel, message: &str);

    /// Runs SQL with `$name` parameters on `database`, or on the trigger's database. The
    /// result is bounded by the invocation's limits ([`Limits::query_result_bound`]).
    ///
    /// [`Limits::query_result_bound`]: crate::Limits::query_result_bound
    fn query<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [(String, String)],
        database: Option<&'a str>,
    ) -> BoxFuture<'a, Result<QueryResult, String>>;

    /// Queues line protocol, written after the invocation succeeds.
    ///
    /// # Errors
    ///
    /// The write may not go to `database`: the invocation fails with this message.
    fn write(&self, database: Option<&str>, line_protocol: String) -> Result<(), String>;

    /// Writes line protocol now; with `no_sync` false, once durable.
    fn write_sync<'a>(
        &'a self,
        database: Option<&'a str>,
        line_protocol: String,
        no_sync: bool,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// Reads a cached value (the trigger's cache, or the shared one if `global`).
    fn cache_get(&self, key: &str, global: bool) -> Option<Vec<u8>>;

    /// Stores a cached value with an optional time to live.
    ///
    /// # Errors
    ///
    /// The value is over a bound of the cache (one value's, or the cache's whole): the
    /// message names the bound; the plugin goes on.
    fn cache_put(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        global: bool,
    ) -> Result<(), String>;

    /// Deletes a cached value; true if it was there.
    fn cache_delete(&self, key: &str, global: bool) -> bool;

    /// Whether the plugin may send requests to `scheme://host:port`.
    ///
    /// # Errors
    ///
    /// Why not, naming the destination and the grant it lacks. The default: no
    /// destination is granted.
    fn http_allowed(&self, scheme: &str, host: &str, port: u16) -> Result<(), String> {
        let _ = (scheme, host, port);
        Err(NO_EGRESS.to_string())
    }

    /// Sends `request` if the plugin may, and reads its response whole. The default:
    /// refused.
    fn http_send(
        &self,
        request: OutboundRequest,
    ) -> BoxFuture<'_, Result<OutboundResponse, OutboundFailure>> {
        let _ = request;
        Box::pin(async {
            Err(OutboundFailure::new(
                OutboundFailureKind::Refused,
                NO_EGRESS,
            ))
        })
    }

    /// Called once the invocation has ended, with whether it succeeded and what it used
    /// until then: the place to apply or discard queued writes.
    fn finish(&self, succeeded: bool, usage: CallUsage);

    /// Called at each epoch tick while the plugin's code runs: a future to wait for
    /// before it runs on, in which other calls may have the CPU. `None` (the default):
    /// yield to the executor once.
    fn pause(&self) -> Option<BoxFuture<'static, ()>> {
        None
    }
}

/// What a call used, counted until it ended, whether it succeeded or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallUsage {
    /// Largest linear memory the instance reached, in bytes.
    pub peak_memory_bytes: u64,
    /// Line-protocol bytes the plugin wrote or queued.
    pub bytes_written: u64,
    /// Bytes it wrote in its `/tmp`, 4 KiB for each file, directory or link created.
    pub tmp_bytes: u64,
    /// CPU time it took on threads other than the one polling its future, which a clock
    /// of that future ([`crate::cpu_timed`]) does not see: the pyo3 runtime runs each
    /// call on a thread of its own.
    pub cpu_elsewhere: Duration,
}
