//! Flags that override the per-invocation limits ([`Limits`]); each defaults to the
//! server-wide default, which the help shows from [`Limits::default`].

use sluice_plugin_api::{LimitOverrides, Limits};
use std::time::Duration;

/// Limits for the plugin run; each defaults to the server-wide default.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    #[arg(long, value_name = "DURATION", value_parser = humantime_duration, help = with_default(
        "CPU-time limit: the time the plugin's code runs on a core (waiting for host \
         calls, sleeping and waiting for a core not counted); for example `200ms` or `2s`",
        humantime::format_duration(Limits::DEFAULT_CPU_TIME).to_string()))]
    pub cpu_time: Option<Duration>,
    #[arg(long, value_name = "MIB", help = with_default(
        "Linear memory limit in MiB", (Limits::DEFAULT_MEMORY_BYTES >> 20).to_string()))]
    pub memory_limit_mib: Option<u64>,
    #[arg(long, value_name = "DURATION", value_parser = humantime_duration, help = with_default(
        "Wall-time limit, for example `500ms` or `10s`",
        humantime::format_duration(Limits::DEFAULT_WALL_TIME).to_string()))]
    pub wall_time: Option<Duration>,
    #[arg(long, value_name = "LINES", help = with_default(
        "Maximum log lines per run", Limits::DEFAULT_LOG_LINES.to_string()))]
    pub max_log_lines: Option<u64>,
    #[arg(long, value_name = "BYTES", help = with_default(
        "Maximum bytes of log text per run (a line is cut at 64 KiB)",
        Limits::DEFAULT_LOG_BYTES.to_string()))]
    pub max_log_bytes: Option<u64>,
    #[arg(long, value_name = "BYTES", help = with_default(
        "Maximum line-protocol bytes written per run", Limits::DEFAULT_BYTES_WRITTEN.to_string()))]
    pub max_bytes_written: Option<u64>,
    #[arg(long, value_name = "BYTES", help = with_default(
        "Maximum response body size of a request plugin",
        Limits::DEFAULT_RESPONSE_BYTES.to_string()))]
    pub max_response_bytes: Option<u64>,
    #[arg(long, value_name = "BYTES", help = with_default(
        "Maximum size of one query's result handed to the plugin (never more than its memory)",
        Limits::DEFAULT_QUERY_RESULT_BYTES.to_string()))]
    pub max_query_result_bytes: Option<u64>,
    #[arg(long, value_name = "BYTES", help = with_default(
        "Maximum size of one cached value", Limits::DEFAULT_CACHE_VALUE_BYTES.to_string()))]
    pub max_cache_value_bytes: Option<u64>,
    #[arg(long, value_name = "BYTES", help = with_default(
        "Maximum bytes of keys and values in the trigger's own cache",
        Limits::DEFAULT_CACHE_BYTES.to_string()))]
    pub max_cache_bytes: Option<u64>,
    #[arg(long, value_name = "FILES", help = with_default(
        "Maximum files and directories an instance holds open at once",
        Limits::DEFAULT_OPEN_FILES.to_string()))]
    pub max_open_files: Option<u64>,
    #[arg(long, value_name = "REQUESTS", help = with_default(
        "Maximum outbound HTTP requests per run, to granted destinations (--allow-host)",
        Limits::DEFAULT_HTTP_REQUESTS.to_string()))]
    pub max_http_requests: Option<u64>,
    #[arg(long, value_name = "BYTES", help = with_default(
        "Maximum size of one outbound HTTP response's body",
        Limits::DEFAULT_HTTP_RESPONSE_BYTES.to_string()))]
    pub max_http_response_bytes: Option<u64>,
    #[arg(long, value_name = "BYTES", help = with_default(
        "Maximum size of one outbound HTTP request's body",
        Limits::DEFAULT_HTTP_REQUEST_BYTES.to_string()))]
    pub max_http_request_bytes: Option<u64>,
    #[arg(long, value_name = "DURATION", value_parser = humantime_duration, help = with_default(
        "Longest one outbound HTTP request may take, connecting included (never past the \
         wall-time limit)",
        humantime::format_duration(Limits::DEFAULT_HTTP_TIMEOUT).to_string()))]
    pub http_timeout: Option<Duration>,
    #[arg(long, value_name = "BYTES", help = with_default(
        "Maximum bytes a run writes in its /tmp, by 4 KiB pages (each file, directory or \
         link created counts one); the files are removed when it ends",
        Limits::DEFAULT_TMP_BYTES.to_string()))]
    pub max_tmp_bytes: Option<u64>,
}

/// `text` followed by its default, as clap shows defaults.
fn with_default(text: &str, default: String) -> String {
    format!("{text} [default: {default}]")
}

fn humantime_duration(text: &str) -> Result<Duration, String> {
    let duration = text
        .parse::<humantime::Duration>()
        .map_err(|e| format!("invalid duration `{text}`: {e}"))?;
    // Limits are kept in whole milliseconds.
    if duration.as_millis() == 0 {
        return Err(format!("a time limit must be at least 1ms, not `{text}`"));
    }
    Ok(duration.into())
}

impl LimitArgs {
    /// The limits these flags set; `None` for those left to the default.
    pub fn overrides(&self) -> LimitOverrides {
        LimitOverrides {
            cpu_time_ms: self
                .cpu_time
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            memory_bytes: self.memory_limit_mib.map(|m| m.saturating_mul(1 << 20)),
            wall_time_ms: self
                .wall_time
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
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
            http_timeout_ms: self
                .http_timeout
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            tmp_bytes: self.max_tmp_bytes,
        }
    }

    /// The defaults with these overrides applied.
    pub fn limits(&self) -> Limits {
        Limits::default().with(&self.overrides())
    }
}
