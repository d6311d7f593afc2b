//! What the engine did, kept in memory for the system tables: plugin log lines
//! (`system.processing_engine_logs`) and one record per invocation
//! (`system.processing_engine_invocations`). Each database has rings of its own, so one
//! database's lines never push out another's: the oldest entries go first once a ring
//! holds [`CAPACITY`] entries or [`BYTES_PER_DATABASE`] of text, and nothing is
//! kept across restarts, as upstream's log table. A deleted database's rings go with it.
//! Invocations are also counted in [`EngineMetrics`].

use crate::metrics::EngineMetrics;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

/// Entries kept per database and table, as upstream's log buffer (which is one for the
/// whole server).
pub const CAPACITY: usize = 10_000;

/// Bytes of text (log lines; invocations' errors) kept per database and table.
pub const BYTES_PER_DATABASE: usize = 16 << 20;

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
    /// Fuel consumed, until the end or the failure.
    pub fuel_used: u64,
    /// Largest linear memory reached.
    pub peak_memory_bytes: u64,
    /// Line protocol written or queued (by a failed call: queued, then discarded).
    pub bytes_written: u64,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// The engine's recent log lines and invocations, and its metrics.
#[derive(Debug, Default)]
pub struct EngineRecords {
    logs: Mutex<HashMap<String, Ring<LogRecord>>>,
    invocations: Mutex<HashMap<String, Ring<InvocationRecord>>>,
    metrics: EngineMetrics,
}

/// The newest entries of one database, within [`CAPACITY`] entries and a byte bound.
#[derive(Debug)]
struct Ring<T> {
    entries: VecDeque<(T, usize)>,
    bytes: usize,
}

impl<T> Default for Ring<T> {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
        }
    }
}

impl<T: Clone> Ring<T> {
    /// Keeps `entry` of `size` bytes, dropping the oldest ones to stay within `max_bytes`.
    fn push(&mut self, entry: T, size: usize, max_bytes: usize) {
        self.entries.push_back((entry, size));
        self.bytes += size;
        while self.entries.len() > CAPACITY || (self.bytes > max_bytes && self.entries.len() > 1) {
            if let Some((_, dropped)) = self.entries.pop_front() {
                self.bytes -= dropped;
            }
        }
    }

    fn all(&self) -> Vec<T> {
        self.entries
            .iter()
            .map(|(entry, _)| entry.clone())
            .collect()
    }
}

fn push<T: Clone>(
    rings: &Mutex<HashMap<String, Ring<T>>>,
    database: &str,
    entry: T,
    size: usize,
    max_bytes: usize,
) {
    let mut rings = rings.lock().unwrap_or_else(PoisonError::into_inner);
    match rings.get_mut(database) {
        Some(ring) => ring.push(entry, size, max_bytes),
        None => {
            let mut ring = Ring::default();
            ring.push(entry, size, max_bytes);
            rings.insert(database.to_string(), ring);
        }
    }
}

fn all<T: Clone>(rings: &Mutex<HashMap<String, Ring<T>>>, database: &str) -> Vec<T> {
    let rings = rings.lock().unwrap_or_else(PoisonError::into_inner);
    rings.get(database).map(Ring::all).unwrap_or_default()
}

impl EngineRecords {
    /// Keeps a log line.
    pub fn log(&self, record: LogRecord) {
        let database = record.database.clone();
        let size = record.text.len() + record.trigger.len();
        push(&self.logs, &database, record, size, BYTES_PER_DATABASE);
    }

    /// Keeps an invocation, and counts it in the metrics.
    pub fn invocation(&self, record: InvocationRecord) {
        self.metrics.invocation(&record);
        let database = record.database.clone();
        let size = record.trigger.len() + record.error.as_ref().map_or(0, String::len);
        push(
            &self.invocations,
            &database,
            record,
            size,
            BYTES_PER_DATABASE,
        );
    }

    /// The counters of every call since the server started.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    /// The log lines of `database`'s triggers, oldest first.
    pub fn logs(&self, database: &str) -> Vec<LogRecord> {
        all(&self.logs, database)
    }

    /// The invocations of `database`'s triggers, oldest first.
    pub fn invocations(&self, database: &str) -> Vec<InvocationRecord> {
        all(&self.invocations, database)
    }

    /// Drops the records of the databases for which `gone(database)` holds (deleted
    /// ones): a database created again under the name starts with none.
    pub fn forget_databases(&self, gone: impl Fn(&str) -> bool) {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|database, _| !gone(database));
        self.invocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|database, _| !gone(database));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(database: &str, time_ns: i64, text: String) -> LogRecord {
        LogRecord {
            time_ns,
            database: database.into(),
            trigger: "t".into(),
            level: "INFO",
            text,
        }
    }

    #[test]
    fn a_database_never_pushes_out_another_ones_lines() {
        let records = EngineRecords::default();
        records.log(line("quiet", 0, "kept".into()));
        for i in 0..CAPACITY + 5 {
            records.log(line("noisy", i as i64, i.to_string()));
        }
        let noisy = records.logs("noisy");
        assert_eq!(noisy.len(), CAPACITY);
        assert_eq!(noisy.first().map(|r| r.time_ns), Some(5), "0..5 dropped");
        assert_eq!(
            records.logs("quiet").len(),
            1,
            "another database's line stays"
        );
        assert!(records.invocations("noisy").is_empty());

        // Long lines are bounded by bytes too.
        let long = "x".repeat(1 << 20);
        for i in 0..20 {
            records.log(line("wordy", i, long.clone()));
        }
        let wordy = records.logs("wordy");
        assert!(wordy.len() < 20, "{} lines kept", wordy.len());
        assert_eq!(
            wordy.last().map(|r| r.time_ns),
            Some(19),
            "the newest stays"
        );
        assert!(wordy.iter().map(|r| r.text.len()).sum::<usize>() <= BYTES_PER_DATABASE);

        records.forget_databases(|database| database == "noisy");
        assert!(records.logs("noisy").is_empty());
        assert_eq!(records.logs("quiet").len(), 1);
    }
}
