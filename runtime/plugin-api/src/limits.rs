//! The budget of one invocation.

use std::fmt;
use std::time::Duration;

/// What one invocation may consume. A plugin that exceeds any of these is stopped and
/// the error names the limit and its value.
///
/// The defaults suit a trigger that transforms a flush of a few thousand rows; set them
/// per server (`serve` flags) and per trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// CPU budget in wasmtime fuel units (about one per WebAssembly instruction).
    /// Deterministic: the same call on the same input uses the same fuel.
    /// Default 10,000,000,000 (a few seconds of interpreter work here).
    pub fuel: u64,
    /// Linear memory per instance, in bytes. Default 256 MiB.
    pub memory_bytes: u64,
    /// Wall-clock time per invocation, host calls and sleeps included. Default 10 s.
    pub wall_time: Duration,
    /// Log lines (including captured stdout/stderr lines) per invocation. Default 10,000.
    pub log_lines: u64,
    /// Line-protocol bytes written (batched and immediate) per invocation. Default 64 MiB.
    pub bytes_written: u64,
    /// Response body bytes of a request plugin. Default 16 MiB.
    pub response_bytes: u64,
    /// Bytes of stdout and stderr captured per invocation; the rest is dropped and the
    /// log says so. Default 1 MiB.
    pub output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 10_000_000_000,
            memory_bytes: 256 << 20,
            wall_time: Duration::from_secs(10),
            log_lines: 10_000,
            bytes_written: 64 << 20,
            response_bytes: 16 << 20,
            output_bytes: 1 << 20,
        }
    }
}

impl Limits {
    /// The value of the limit of `kind`, as it appears in error messages.
    pub fn describe(&self, kind: LimitKind) -> String {
        match kind {
            LimitKind::Fuel => format!("fuel exhausted after {} units", self.fuel),
            LimitKind::Memory => format!("memory limit of {} exceeded", bytes(self.memory_bytes)),
            LimitKind::WallTime => {
                format!("timed out after {}", humanize(self.wall_time))
            }
            LimitKind::LogLines => format!("log limit of {} lines exceeded", self.log_lines),
            LimitKind::BytesWritten => {
                format!("write limit of {} exceeded", bytes(self.bytes_written))
            }
            LimitKind::ResponseBytes => {
                format!(
                    "response size limit of {} exceeded",
                    bytes(self.response_bytes)
                )
            }
        }
    }
}

/// Which limit an invocation hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// [`Limits::fuel`]
    Fuel,
    /// [`Limits::memory_bytes`]
    Memory,
    /// [`Limits::wall_time`]
    WallTime,
    /// [`Limits::log_lines`]
    LogLines,
    /// [`Limits::bytes_written`]
    BytesWritten,
    /// [`Limits::response_bytes`]
    ResponseBytes,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fuel => "fuel",
            Self::Memory => "memory",
            Self::WallTime => "wall time",
            Self::LogLines => "log lines",
            Self::BytesWritten => "bytes written",
            Self::ResponseBytes => "response size",
        })
    }
}

fn bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
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
            fuel: 500_000_000,
            memory_bytes: 64 << 20,
            wall_time: Duration::from_secs(10),
            log_lines: 100,
            bytes_written: 1000,
            response_bytes: 2048,
            output_bytes: 4096,
        };
        assert_eq!(
            limits.describe(LimitKind::Fuel),
            "fuel exhausted after 500000000 units"
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
            limits.describe(LimitKind::BytesWritten),
            "write limit of 1000 bytes exceeded"
        );
        assert_eq!(
            limits.describe(LimitKind::ResponseBytes),
            "response size limit of 2 KiB exceeded"
        );
        let short = Limits {
            wall_time: Duration::from_millis(250),
            ..limits
        };
        assert_eq!(short.describe(LimitKind::WallTime), "timed out after 250ms");
    }
}
