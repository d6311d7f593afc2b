//! Flags that override the per-invocation limits.

use sluice_plugin_api::Limits;
use std::time::Duration;

/// Limits for the plugin run; each defaults to the server-wide default.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// CPU budget in fuel units (about one per WebAssembly instruction) [default: 10000000000]
    #[arg(long, value_name = "UNITS")]
    pub fuel: Option<u64>,
    /// Linear memory limit in MiB [default: 256]
    #[arg(long, value_name = "MIB")]
    pub memory_limit_mib: Option<u64>,
    /// Wall-time limit, for example `500ms` or `10s` [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = humantime_duration)]
    pub wall_time: Option<Duration>,
    /// Maximum log lines per run [default: 10000]
    #[arg(long, value_name = "LINES")]
    pub max_log_lines: Option<u64>,
    /// Maximum line-protocol bytes written per run [default: 67108864]
    #[arg(long, value_name = "BYTES")]
    pub max_bytes_written: Option<u64>,
    /// Maximum response body size of a request plugin [default: 16777216]
    #[arg(long, value_name = "BYTES")]
    pub max_response_bytes: Option<u64>,
}

fn humantime_duration(text: &str) -> Result<Duration, String> {
    let duration = text
        .parse::<humantime::Duration>()
        .map_err(|e| format!("invalid duration `{text}`: {e}"))?;
    if duration.is_zero() {
        return Err("the wall-time limit must be more than zero".into());
    }
    Ok(duration.into())
}

impl LimitArgs {
    /// The defaults with these overrides applied.
    pub fn limits(&self) -> Limits {
        let defaults = Limits::default();
        Limits {
            fuel: self.fuel.unwrap_or(defaults.fuel),
            memory_bytes: self
                .memory_limit_mib
                .map_or(defaults.memory_bytes, |m| m.saturating_mul(1 << 20)),
            wall_time: self.wall_time.unwrap_or(defaults.wall_time),
            log_lines: self.max_log_lines.unwrap_or(defaults.log_lines),
            bytes_written: self.max_bytes_written.unwrap_or(defaults.bytes_written),
            response_bytes: self.max_response_bytes.unwrap_or(defaults.response_bytes),
            output_bytes: defaults.output_bytes,
        }
    }
}
