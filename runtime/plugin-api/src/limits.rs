//! The budget of one invocation, and a trigger's own overrides of it.
//!
//! [`Limits`] is the one type of a plugin's limits: the server's defaults (`sluice serve`
//! flags), a trigger's (`sluice create trigger` flags, `limits` of the HTTP request,
//! kept in the catalog as [`LimitOverrides`]) and a test run's are all a `Limits`, or
//! overrides applied to one with [`Limits::with`], and checked by [`Limits::check`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// What one invocation may consume, and what its trigger may keep. A plugin that
/// exceeds a limit of its call is stopped and the error names the limit and its value;
/// one that asks the host for more than a bound on what it receives or keeps (a query
/// result, a cached value) gets an exception naming the bound and goes on.
///
/// The defaults suit a trigger that transforms a flush of a few thousand rows; set them
/// per server (`serve` flags) and per trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// CPU time per invocation: the time its plugin's code runs on a core (host calls
    /// it waits for, sleeps and waiting for a core are not counted). Checked at each
    /// epoch tick of the sandbox, so a call may pass it by up to one tick. Default
    /// [`Self::DEFAULT_CPU_TIME`].
    pub cpu_time: Duration,
    /// Linear memory per instance, in bytes. Default [`Self::DEFAULT_MEMORY_BYTES`].
    pub memory_bytes: u64,
    /// Wall-clock time per invocation, host calls and sleeps included. Default
    /// [`Self::DEFAULT_WALL_TIME`].
    pub wall_time: Duration,
    /// Log lines (including captured stdout/stderr lines) per invocation. Default
    /// [`Self::DEFAULT_LOG_LINES`].
    pub log_lines: u64,
    /// Bytes of log text per invocation. Default [`Self::DEFAULT_LOG_BYTES`]. A line
    /// longer than [`Self::MAX_LOG_LINE_BYTES`] is cut there, and says so.
    pub log_bytes: u64,
    /// Line-protocol bytes written (batched and immediate) per invocation. Default
    /// [`Self::DEFAULT_BYTES_WRITTEN`].
    pub bytes_written: u64,
    /// Response body bytes of a request plugin. Default [`Self::DEFAULT_RESPONSE_BYTES`].
    pub response_bytes: u64,
    /// Bytes of stdout and stderr captured per invocation; the rest is dropped and the
    /// log says so. Default [`Self::DEFAULT_OUTPUT_BYTES`].
    pub output_bytes: u64,
    /// Bytes of one query's result handed to the plugin (what it receives: 8 per number,
    /// a string's bytes plus 4); the query stops once its result is over it, and never
    /// passes [`Self::memory_bytes`] either. Default [`Self::DEFAULT_QUERY_RESULT_BYTES`].
    pub query_result_bytes: u64,
    /// Bytes of one cached value. Default [`Self::DEFAULT_CACHE_VALUE_BYTES`].
    pub cache_value_bytes: u64,
    /// Bytes of keys and values in the trigger's own cache. Default
    /// [`Self::DEFAULT_CACHE_BYTES`]. (The shared cache of a database has a bound of its
    /// own, set for the server.)
    pub cache_bytes: u64,
    /// Files and directories an instance may hold open at once. Default
    /// [`Self::DEFAULT_OPEN_FILES`].
    pub open_files: u64,
    /// Outbound HTTP requests per invocation, to the destinations its trigger is
    /// granted. Default [`Self::DEFAULT_HTTP_REQUESTS`].
    pub http_requests: u64,
    /// Bytes of one outbound request's response body, as received. Default
    /// [`Self::DEFAULT_HTTP_RESPONSE_BYTES`].
    pub http_response_bytes: u64,
    /// Bytes of one outbound request's body: what the host sends for the plugin.
    /// Default [`Self::DEFAULT_HTTP_REQUEST_BYTES`].
    pub http_request_bytes: u64,
    /// How long one outbound request may take, connecting included, within what is left
    /// of [`Self::wall_time`]. Default [`Self::DEFAULT_HTTP_TIMEOUT`].
    pub http_timeout: Duration,
    /// Bytes one invocation may write in its `/tmp`, counted by the 4 KiB pages its
    /// writes touch, each file, directory or link it creates counting one; nothing
    /// counts out before the invocation ends, when its `/tmp` is emptied. Past it,
    /// creating a file or writing fails with `ENOSPC`. Default
    /// [`Self::DEFAULT_TMP_BYTES`].
    pub tmp_bytes: u64,
}

impl Limits {
    /// 5 s: `import pandas` takes about 2.5 s here.
    pub const DEFAULT_CPU_TIME: Duration = Duration::from_secs(5);
    /// 256 MiB.
    pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;
    /// 10 s.
    pub const DEFAULT_WALL_TIME: Duration = Duration::from_secs(10);
    /// 10,000 lines.
    pub const DEFAULT_LOG_LINES: u64 = 10_000;
    /// 4 MiB.
    pub const DEFAULT_LOG_BYTES: u64 = 4 << 20;
    /// 64 KiB: longer log lines are cut.
    pub const MAX_LOG_LINE_BYTES: usize = 64 << 10;
    /// 64 MiB.
    pub const DEFAULT_BYTES_WRITTEN: u64 = 64 << 20;
    /// 16 MiB.
    pub const DEFAULT_RESPONSE_BYTES: u64 = 16 << 20;
    /// 1 MiB.
    pub const DEFAULT_OUTPUT_BYTES: u64 = 1 << 20;
    /// 64 MiB.
    pub const DEFAULT_QUERY_RESULT_BYTES: u64 = 64 << 20;
    /// 16 MiB.
    pub const DEFAULT_CACHE_VALUE_BYTES: u64 = 16 << 20;
    /// 64 MiB.
    pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;
    /// 64 files.
    pub const DEFAULT_OPEN_FILES: u64 = 64;
    /// 100 requests.
    pub const DEFAULT_HTTP_REQUESTS: u64 = 100;
    /// 10 MiB.
    pub const DEFAULT_HTTP_RESPONSE_BYTES: u64 = 10 << 20;
    /// 1 MiB.
    pub const DEFAULT_HTTP_REQUEST_BYTES: u64 = 1 << 20;
    /// 10 s.
    pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
    /// 16 MiB.
    pub const DEFAULT_TMP_BYTES: u64 = 16 << 20;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_time: Self::DEFAULT_CPU_TIME,
            memory_bytes: Self::DEFAULT_MEMORY_BYTES,
            wall_time: Self::DEFAULT_WALL_TIME,
            log_lines: Self::DEFAULT_LOG_LINES,
            log_bytes: Self::DEFAULT_LOG_BYTES,
            bytes_written: Self::DEFAULT_BYTES_WRITTEN,
            response_bytes: Self::DEFAULT_RESPONSE_BYTES,
            output_bytes: Self::DEFAULT_OUTPUT_BYTES,
            query_result_bytes: Self::DEFAULT_QUERY_RESULT_BYTES,
            cache_value_bytes: Self::DEFAULT_CACHE_VALUE_BYTES,
            cache_bytes: Self::DEFAULT_CACHE_BYTES,
            open_files: Self::DEFAULT_OPEN_FILES,
            http_requests: Self::DEFAULT_HTTP_REQUESTS,
            http_response_bytes: Self::DEFAULT_HTTP_RESPONSE_BYTES,
            http_request_bytes: Self::DEFAULT_HTTP_REQUEST_BYTES,
            http_timeout: Self::DEFAULT_HTTP_TIMEOUT,
            tmp_bytes: Self::DEFAULT_TMP_BYTES,
        }
    }
}

/// A limit that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A limit of zero, which no call could run within.
    #[error("{0} must be more than zero")]
    Zero(&'static str),
    /// More memory than the executor can give an instance.
    #[error("a memory limit of {limit} is over the sandbox's largest memory of {largest}")]
    MemoryOverLargest {
        /// The limit asked for.
        limit: String,
        /// The largest the executor allows.
        largest: String,
    },
}

impl Limits {
    /// These limits with `overrides` in place of the ones they set.
    pub fn with(&self, overrides: &LimitOverrides) -> Self {
        let o = overrides;
        Self {
            cpu_time: o.cpu_time_ms.map_or(self.cpu_time, Duration::from_millis),
            memory_bytes: o.memory_bytes.unwrap_or(self.memory_bytes),
            wall_time: o.wall_time_ms.map_or(self.wall_time, Duration::from_millis),
            log_lines: o.log_lines.unwrap_or(self.log_lines),
            log_bytes: o.log_bytes.unwrap_or(self.log_bytes),
            bytes_written: o.bytes_written.unwrap_or(self.bytes_written),
            response_bytes: o.response_bytes.unwrap_or(self.response_bytes),
            output_bytes: self.output_bytes,
            query_result_bytes: o.query_result_bytes.unwrap_or(self.query_result_bytes),
            cache_value_bytes: o.cache_value_bytes.unwrap_or(self.cache_value_bytes),
            cache_bytes: o.cache_bytes.unwrap_or(self.cache_bytes),
            open_files: o.open_files.unwrap_or(self.open_files),
            http_requests: o.http_requests.unwrap_or(self.http_requests),
            http_response_bytes: o.http_response_bytes.unwrap_or(self.http_response_bytes),
            http_request_bytes: o.http_request_bytes.unwrap_or(self.http_request_bytes),
            http_timeout: o
                .http_timeout_ms
                .map_or(self.http_timeout, Duration::from_millis),
            tmp_bytes: o.tmp_bytes.unwrap_or(self.tmp_bytes),
        }
    }

    /// Checks that a call can run within these limits on an executor whose instances
    /// have at most `largest_memory_bytes` of memory.
    ///
    /// # Errors
    ///
    /// [`LimitError`]: a budget of zero, or more memory than an instance may have.
    pub fn check(&self, largest_memory_bytes: u64) -> Result<(), LimitError> {
        for (name, value) in [
            ("the CPU-time limit", millis(self.cpu_time)),
            ("the memory limit", self.memory_bytes),
            ("the wall-time limit", millis(self.wall_time)),
            ("the HTTP time-out", millis(self.http_timeout)),
        ] {
            if value == 0 {
                return Err(LimitError::Zero(name));
            }
        }
        if self.memory_bytes > largest_memory_bytes {
            return Err(LimitError::MemoryOverLargest {
                limit: size_text(self.memory_bytes),
                largest: size_text(largest_memory_bytes),
            });
        }
        Ok(())
    }

    /// The name of the first of these limits that is over `ceiling`'s, if one is: what a
    /// tenant may not ask for its triggers.
    pub fn first_over(&self, ceiling: &Limits) -> Option<&'static str> {
        let pairs = [
            ("CPU time", millis(self.cpu_time), millis(ceiling.cpu_time)),
            ("memory", self.memory_bytes, ceiling.memory_bytes),
            (
                "wall time",
                millis(self.wall_time),
                millis(ceiling.wall_time),
            ),
            ("log lines", self.log_lines, ceiling.log_lines),
            ("log bytes", self.log_bytes, ceiling.log_bytes),
            ("bytes written", self.bytes_written, ceiling.bytes_written),
            (
                "response bytes",
                self.response_bytes,
                ceiling.response_bytes,
            ),
            (
                "query result bytes",
                self.query_result_bytes,
                ceiling.query_result_bytes,
            ),
            (
                "cache value bytes",
                self.cache_value_bytes,
                ceiling.cache_value_bytes,
            ),
            ("cache bytes", self.cache_bytes, ceiling.cache_bytes),
            ("open files", self.open_files, ceiling.open_files),
            ("HTTP requests", self.http_requests, ceiling.http_requests),
            (
                "HTTP response bytes",
                self.http_response_bytes,
                ceiling.http_response_bytes,
            ),
            (
                "HTTP request bytes",
                self.http_request_bytes,
                ceiling.http_request_bytes,
            ),
            (
                "HTTP time-out",
                millis(self.http_timeout),
                millis(ceiling.http_timeout),
            ),
            ("/tmp bytes", self.tmp_bytes, ceiling.tmp_bytes),
        ];
        pairs
            .into_iter()
            .find(|(_, value, most)| value > most)
            .map(|(name, _, _)| name)
    }

    /// The largest query result the plugin may receive: its own bound, within its memory.
    pub fn query_result_bound(&self) -> u64 {
        self.query_result_bytes.min(self.memory_bytes)
    }

    /// The value of the limit of `kind`, as it appears in error messages.
    pub fn describe(&self, kind: LimitKind) -> String {
        match kind {
            LimitKind::CpuTime => {
                format!("CPU time limit of {} exceeded", humanize(self.cpu_time))
            }
            LimitKind::Memory => {
                format!("memory limit of {} exceeded", size_text(self.memory_bytes))
            }
            LimitKind::WallTime => {
                format!("timed out after {}", humanize(self.wall_time))
            }
            LimitKind::LogLines => format!("log limit of {} lines exceeded", self.log_lines),
            LimitKind::LogBytes => {
                format!("log limit of {} exceeded", size_text(self.log_bytes))
            }
            LimitKind::BytesWritten => {
                format!("write limit of {} exceeded", size_text(self.bytes_written))
            }
            LimitKind::ResponseBytes => {
                format!(
                    "response size limit of {} exceeded",
                    size_text(self.response_bytes)
                )
            }
            LimitKind::Handles => format!(
                "limit of {} host handles exceeded (open files, directories, streams and \
                 timers held at once)",
                self.handles()
            ),
        }
    }

    /// Host handles (WASI resources: files, streams, timers) an instance may hold at
    /// once: its open files and a margin for the rest.
    pub fn handles(&self) -> u64 {
        self.open_files.saturating_add(HANDLE_MARGIN)
    }
}

/// Handles an instance may hold beyond its open files: its standard streams, the
/// streams of its open files, timers.
const HANDLE_MARGIN: u64 = 256;

/// A trigger's own limits, where they differ from the server's; `None` keeps the
/// server's. Kept in the catalog under these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LimitOverrides {
    /// [`Limits::cpu_time`], in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time_ms: Option<u64>,
    /// [`Limits::memory_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// [`Limits::wall_time`], in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time_ms: Option<u64>,
    /// [`Limits::log_lines`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_lines: Option<u64>,
    /// [`Limits::log_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_bytes: Option<u64>,
    /// [`Limits::bytes_written`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_written: Option<u64>,
    /// [`Limits::response_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<u64>,
    /// [`Limits::query_result_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_result_bytes: Option<u64>,
    /// [`Limits::cache_value_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_value_bytes: Option<u64>,
    /// [`Limits::cache_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_bytes: Option<u64>,
    /// [`Limits::open_files`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    /// [`Limits::http_requests`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_requests: Option<u64>,
    /// [`Limits::http_response_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_response_bytes: Option<u64>,
    /// [`Limits::http_request_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_request_bytes: Option<u64>,
    /// [`Limits::http_timeout`], in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_timeout_ms: Option<u64>,
    /// [`Limits::tmp_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmp_bytes: Option<u64>,
}

impl LimitOverrides {
    /// True when the trigger runs within the server's limits.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The name of the first override given that only the sandbox enforces, if one is:
    /// what a runtime without a sandbox (the pyo3 runtime) refuses to be given. The
    /// others the host enforces at the door, whatever runs the plugin.
    pub fn sandbox_only(&self) -> Option<&'static str> {
        [
            ("CPU time", self.cpu_time_ms),
            ("memory", self.memory_bytes),
            ("wall time", self.wall_time_ms),
            ("open files", self.open_files),
            ("HTTP requests", self.http_requests),
            ("HTTP response bytes", self.http_response_bytes),
            ("HTTP request bytes", self.http_request_bytes),
            ("HTTP time-out", self.http_timeout_ms),
            ("/tmp bytes", self.tmp_bytes),
        ]
        .into_iter()
        .find(|(_, value)| value.is_some())
        .map(|(name, _)| name)
    }

    /// `name=value` for each override, comma-separated: `cpu_time_ms=100,wall_time_ms=500`.
    pub fn describe(&self) -> String {
        [
            ("cpu_time_ms", self.cpu_time_ms),
            ("memory_bytes", self.memory_bytes),
            ("wall_time_ms", self.wall_time_ms),
            ("log_lines", self.log_lines),
            ("log_bytes", self.log_bytes),
            ("bytes_written", self.bytes_written),
            ("response_bytes", self.response_bytes),
            ("query_result_bytes", self.query_result_bytes),
            ("cache_value_bytes", self.cache_value_bytes),
            ("cache_bytes", self.cache_bytes),
            ("open_files", self.open_files),
            ("http_requests", self.http_requests),
            ("http_response_bytes", self.http_response_bytes),
            ("http_request_bytes", self.http_request_bytes),
            ("http_timeout_ms", self.http_timeout_ms),
            ("tmp_bytes", self.tmp_bytes),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| format!("{name}={v}")))
        .collect::<Vec<_>>()
        .join(",")
    }
}

/// Which limit stopped an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// [`Limits::cpu_time`]
    CpuTime,
    /// [`Limits::memory_bytes`]
    Memory,
    /// [`Limits::wall_time`]
    WallTime,
    /// [`Limits::log_lines`]
    LogLines,
    /// [`Limits::log_bytes`]
    LogBytes,
    /// [`Limits::bytes_written`]
    BytesWritten,
    /// [`Limits::response_bytes`]
    ResponseBytes,
    /// [`Limits::handles`]
    Handles,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CpuTime => "CPU time",
            Self::Memory => "memory",
            Self::WallTime => "wall time",
            Self::LogLines => "log lines",
            Self::LogBytes => "log bytes",
            Self::BytesWritten => "bytes written",
            Self::ResponseBytes => "response size",
            Self::Handles => "host handles",
        })
    }
}

/// `n` bytes as limits name them: in MiB or KiB when a whole number of them.
pub fn size_text(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// `d` in whole milliseconds, as limits compare and keep durations.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn humanize(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_limit_and_its_value() {
        let limits = Limits {
            cpu_time: Duration::from_millis(200),
            memory_bytes: 64 << 20,
            log_lines: 100,
            log_bytes: 3 << 10,
            bytes_written: 1000,
            response_bytes: 2048,
            open_files: 8,
            ..Limits::default()
        };
        assert_eq!(
            limits.describe(LimitKind::CpuTime),
            "CPU time limit of 200ms exceeded"
        );
        assert_eq!(
            limits.describe(LimitKind::Memory),
            "memory limit of 64 MiB exceeded"
        );
        assert_eq!(limits.describe(LimitKind::WallTime), "timed out after 10s");
        assert_eq!(
            limits.describe(LimitKind::LogLines),
            "log limit of 100 lines exceeded"
        );
        assert_eq!(
            limits.describe(LimitKind::LogBytes),
            "log limit of 3 KiB exceeded"
        );
        assert_eq!(
            limits.describe(LimitKind::BytesWritten),
            "write limit of 1000 bytes exceeded"
        );
        assert_eq!(
            limits.describe(LimitKind::ResponseBytes),
            "response size limit of 2 KiB exceeded"
        );
        assert!(
            limits
                .describe(LimitKind::Handles)
                .starts_with("limit of 264 host handles exceeded")
        );
        let short = Limits {
            wall_time: Duration::from_millis(250),
            ..limits
        };
        assert_eq!(short.describe(LimitKind::WallTime), "timed out after 250ms");
    }

    #[test]
    fn overrides_replace_what_they_set_and_are_checked_once() {
        let server = Limits::default();
        let overrides = LimitOverrides {
            cpu_time_ms: Some(7),
            wall_time_ms: Some(1500),
            cache_bytes: Some(1 << 10),
            ..LimitOverrides::default()
        };
        let trigger = server.with(&overrides);
        assert_eq!(trigger.cpu_time, Duration::from_millis(7));
        assert_eq!(trigger.wall_time, Duration::from_millis(1500));
        assert_eq!(trigger.cache_bytes, 1 << 10);
        assert_eq!(trigger.memory_bytes, server.memory_bytes);
        assert_eq!(
            overrides.describe(),
            "cpu_time_ms=7,wall_time_ms=1500,cache_bytes=1024"
        );
        assert_eq!(server.with(&LimitOverrides::default()), server);

        assert_eq!(trigger.check(1 << 30), Ok(()));
        let over = Limits {
            memory_bytes: 2 << 30,
            ..trigger.clone()
        };
        assert_eq!(
            over.check(1 << 30).map_err(|e| e.to_string()),
            Err(
                "a memory limit of 2048 MiB is over the sandbox's largest memory of 1024 MiB"
                    .into()
            )
        );
        let no_cpu = Limits {
            cpu_time: Duration::ZERO,
            ..trigger
        };
        assert_eq!(
            no_cpu.check(1 << 30),
            Err(LimitError::Zero("the CPU-time limit"))
        );

        let small = Limits {
            query_result_bytes: 1 << 30,
            memory_bytes: 64 << 20,
            ..Limits::default()
        };
        assert_eq!(small.query_result_bound(), 64 << 20);
    }

    #[test]
    fn catalog_names_are_kept() {
        let overrides = LimitOverrides {
            memory_bytes: Some(1),
            open_files: Some(2),
            ..LimitOverrides::default()
        };
        let json = serde_json::to_string(&overrides).expect("serialises");
        assert_eq!(json, r#"{"memory_bytes":1,"open_files":2}"#);
        assert_eq!(
            serde_json::from_str::<LimitOverrides>(r#"{"cpu_time_ms":5,"wall_time_ms":9}"#)
                .expect("reads them back"),
            LimitOverrides {
                cpu_time_ms: Some(5),
                wall_time_ms: Some(9),
                ..LimitOverrides::default()
            }
        );
        // Catalogs written when the CPU budget was counted in fuel: the trigger keeps
        // the server's CPU time, and its other limits.
        assert_eq!(
            serde_json::from_str::<LimitOverrides>(r#"{"fuel":5,"wall_time_ms":9}"#)
                .expect("reads what older catalogs wrote"),
            LimitOverrides {
                wall_time_ms: Some(9),
                ..LimitOverrides::default()
            }
        );
    }
}
