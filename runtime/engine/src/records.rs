//! What the engine did, kept in memory for the system tables: plugin log lines
//! (`system.processing_engine_logs`) and one record per invocation
//! (`system.processing_engine_invocations`). Each is a ring buffer: the oldest entries
//! go first, and nothing is kept across restarts, as upstream's log table. Invocations
//! are also counted in [`EngineMetrics`].

use crate::metrics::EngineMetrics;
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

/// Entries kept per table, as upstream's log buffer.
pub const CAPACITY: usize = 10_000;

/// One plugin log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// Nanoseconds since the epoch.
    pub time_ns: i64,
    /// The trigger's database.
    pub database: String,
    /// The trigger.
    pub trigger: String,
    /// `INFO`, `WARN` or `ERROR`.
    pub level: &'static str,
    /// The text.
    pub text: String,
}

/// One invocation of a trigger's plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationRecord {
    /// The trigger's database.
    pub database: String,
    /// The trigger.
    pub trigger: String,
    /// When it started, nanoseconds since the epoch.
    pub start_ns: i64,
    /// How long it took, instantiation included.
    pub duration_ns: i64,
    /// Fuel consumed (0 when it failed).
    pub fuel_used: u64,
    /// Largest linear memory reached (0 when it failed).
    pub peak_memory_bytes: u64,
    /// Line protocol written or queued (0 when it failed).
    pub bytes_written: u64,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// The engine's recent log lines and invocations, and its metrics.
#[derive(Debug, Default)]
pub struct EngineRecords {
    logs: Mutex<VecDeque<LogRecord>>,
    invocations: Mutex<VecDeque<InvocationRecord>>,
    metrics: EngineMetrics,
}

fn push<T>(ring: &Mutex<VecDeque<T>>, entry: T) {
    let mut ring = ring.lock().unwrap_or_else(PoisonError::into_inner);
    if ring.len() == CAPACITY {
        ring.pop_front();
    }
    ring.push_back(entry);
}

impl EngineRecords {
    /// Keeps a log line.
    pub fn log(&self, record: LogRecord) {
        push(&self.logs, record);
    }

    /// Keeps an invocation, and counts it in the metrics.
    pub fn invocation(&self, record: InvocationRecord) {
        self.metrics.invocation(&record);
        push(&self.invocations, record);
    }

    /// The counters of every call since the server started.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    /// The log lines of `database`'s triggers, oldest first.
    pub fn logs(&self, database: &str) -> Vec<LogRecord> {
        let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        logs.iter()
            .filter(|r| r.database == database)
            .cloned()
            .collect()
    }

    /// The invocations of `database`'s triggers, oldest first.
    pub fn invocations(&self, database: &str) -> Vec<InvocationRecord> {
        let invocations = self
            .invocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        invocations
            .iter()
            .filter(|r| r.database == database)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_entries_go_first_and_databases_see_only_their_own() {
        let records = EngineRecords::default();
        for i in 0..CAPACITY + 5 {
            let database = if i % 2 == 0 { "a" } else { "b" };
            records.log(LogRecord {
                time_ns: i as i64,
                database: database.into(),
                trigger: "t".into(),
                level: "INFO",
                text: i.to_string(),
            });
        }
        let a = records.logs("a");
        assert_eq!(a.len(), CAPACITY / 2);
        assert_eq!(
            a.first().map(|r| r.time_ns),
            Some(6),
            "entries 0..5 were dropped"
        );
        assert!(records.logs("b").iter().all(|r| r.database == "b"));
        assert!(records.invocations("a").is_empty());
    }
}
