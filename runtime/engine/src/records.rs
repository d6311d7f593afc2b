//! What the engine did, kept in memory for the system tables: plugin log lines
//! (`system.processing_engine_logs`) and one record per invocation
//! (`system.processing_engine_invocations`). Each database has rings of its own, so one
//! database's lines never push out another's: the oldest entries go first once a ring
//! holds [`CAPACITY`] entries or [`BYTES_PER_DATABASE`] of text, and nothing is
//! kept across restarts, as upstream's log table. A deleted database's rings go with it.
//! Invocations are also counted in [`EngineMetrics`].
//!
//! Usage is kept per trigger while the trigger exists; a deleted trigger's is added to its
//! database's row for deleted triggers (a trigger name of `None`), so that what a tenant
//! used stays counted however many triggers it creates and deletes, and the memory it
//! takes stays bounded by the triggers that exist.

use crate::metrics::EngineMetrics;
use sluice_catalog::{DatabaseRef, DbId};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

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
    pub database: DatabaseRef,
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
    pub database: DatabaseRef,
    /// The trigger.
    pub trigger: String,
    /// When it started, nanoseconds since the epoch.
    pub start_ns: i64,
    /// How long it took, instantiation included.
    pub duration_ns: i64,
    /// Largest linear memory reached.
    pub peak_memory_bytes: u64,
    /// Line protocol written or queued (by a failed call: queued, then discarded).
    pub bytes_written: u64,
    /// CPU time its plugin's code took, nanoseconds.
    pub cpu_ns: u64,
    /// Rows its queries returned to it.
    pub query_rows: u64,
    /// Outbound HTTP requests it sent.
    pub http_requests: u64,
    /// Bytes of the responses to them.
    pub http_response_bytes: u64,
    /// Bytes it wrote in its `/tmp` (4 KiB for each file created).
    pub tmp_bytes: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it failed, or what it skipped.
    pub error: Option<String>,
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The plugin returned.
    Success,
    /// The plugin, or what the host did for it, failed.
    Error,
    /// Never called: a WAL trigger skipped flushes it could not have.
    Skipped,
}

impl Outcome {
    /// Its name in `system.processing_engine_invocations` and `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::Skipped => "skipped",
        }
    }
}

impl InvocationRecord {
    /// The record of flushes `trigger` of `database` skipped, as `text` names them.
    pub fn skipped(database: &DatabaseRef, trigger: &str, text: String) -> Self {
        Self {
            database: database.clone(),
            trigger: trigger.to_string(),
            start_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            duration_ns: 0,
            peak_memory_bytes: 0,
            bytes_written: 0,
            cpu_ns: 0,
            query_rows: 0,
            http_requests: 0,
            http_response_bytes: 0,
            tmp_bytes: 0,
            outcome: Outcome::Skipped,
            error: Some(text),
        }
    }
}

/// Hours of usage kept hour by hour, per trigger: a week.
pub const USAGE_HOURS: i64 = 7 * 24;

const HOUR_NS: i64 = 3_600 * 1_000_000_000;

/// What calls of a trigger used, added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Calls.
    pub invocations: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Time spent in calls, nanoseconds.
    pub wall_ns: u64,
    /// The largest linear memory one call reached.
    pub peak_memory_bytes: u64,
    /// Line protocol handed to the host to write.
    pub bytes_written: u64,
    /// CPU time the plugins' code took, nanoseconds.
    pub cpu_ns: u64,
    /// Rows the plugins' queries returned.
    pub query_rows: u64,
    /// Outbound HTTP requests the plugins sent.
    pub http_requests: u64,
    /// Bytes of the responses to them.
    pub http_response_bytes: u64,
    /// Bytes the plugins wrote in their `/tmp` (4 KiB for each file created).
    pub tmp_bytes: u64,
    /// CPU time the server took reading the trigger's flushes back from WAL files, for
    /// a WAL trigger behind the flushes kept in memory, nanoseconds.
    pub wal_read_ns: u64,
}

impl Usage {
    /// Adds what `other` counts.
    fn merge(&mut self, other: &Usage) {
        self.invocations = self.invocations.saturating_add(other.invocations);
        self.errors = self.errors.saturating_add(other.errors);
        self.wall_ns = self.wall_ns.saturating_add(other.wall_ns);
        self.peak_memory_bytes = self.peak_memory_bytes.max(other.peak_memory_bytes);
        self.bytes_written = self.bytes_written.saturating_add(other.bytes_written);
        self.cpu_ns = self.cpu_ns.saturating_add(other.cpu_ns);
        self.query_rows = self.query_rows.saturating_add(other.query_rows);
        self.http_requests = self.http_requests.saturating_add(other.http_requests);
        self.http_response_bytes = self
            .http_response_bytes
            .saturating_add(other.http_response_bytes);
        self.tmp_bytes = self.tmp_bytes.saturating_add(other.tmp_bytes);
        self.wal_read_ns = self.wal_read_ns.saturating_add(other.wal_read_ns);
    }

    fn add(&mut self, call: &InvocationRecord) {
        if call.outcome == Outcome::Skipped {
            // Not a call: nothing was used.
            return;
        }
        self.invocations += 1;
        self.errors += u64::from(call.error.is_some());
        self.wall_ns = self
            .wall_ns
            .saturating_add(u64::try_from(call.duration_ns).unwrap_or_default());
        self.peak_memory_bytes = self.peak_memory_bytes.max(call.peak_memory_bytes);
        self.bytes_written = self.bytes_written.saturating_add(call.bytes_written);
        self.cpu_ns = self.cpu_ns.saturating_add(call.cpu_ns);
        self.query_rows = self.query_rows.saturating_add(call.query_rows);
        self.http_requests = self.http_requests.saturating_add(call.http_requests);
        self.http_response_bytes = self
            .http_response_bytes
            .saturating_add(call.http_response_bytes);
        self.tmp_bytes = self.tmp_bytes.saturating_add(call.tmp_bytes);
    }
}

/// What one trigger used: since the server started (`hour_ns` `None`), or in one hour
/// (its start, nanoseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// The trigger; `None` for the database's triggers deleted since the server started.
    pub trigger: Option<String>,
    /// The hour, or `None` for everything since the server started.
    pub hour_ns: Option<i64>,
    /// What its calls used.
    pub usage: Usage,
}

/// A database's usage: totals per trigger, and per hour and trigger for the last
/// [`USAGE_HOURS`].
#[derive(Debug, Default)]
struct DatabaseUsage {
    totals: BTreeMap<Option<String>, Usage>,
    hourly: BTreeMap<(i64, Option<String>), Usage>,
}

impl DatabaseUsage {
    /// Moves the usage of the triggers for which `exists` is false to the row of deleted
    /// triggers; returns their names.
    fn fold_deleted(&mut self, exists: impl Fn(&str) -> bool) -> Vec<String> {
        let deleted: Vec<String> = self
            .totals
            .keys()
            .flatten()
            .filter(|name| !exists(name))
            .cloned()
            .collect();
        for name in &deleted {
            if let Some(usage) = self.totals.remove(&Some(name.clone())) {
                self.totals.entry(None).or_default().merge(&usage);
            }
        }
        let hours: Vec<(i64, Option<String>)> = self
            .hourly
            .keys()
            .filter(|(_, trigger)| trigger.as_deref().is_some_and(|name| !exists(name)))
            .cloned()
            .collect();
        for key in hours {
            if let Some(usage) = self.hourly.remove(&key) {
                self.hourly.entry((key.0, None)).or_default().merge(&usage);
            }
        }
        deleted
    }
}

/// The engine's recent log lines and invocations, its usage per database, and its
/// metrics.
#[derive(Debug, Default)]
pub struct EngineRecords {
    logs: Mutex<HashMap<DbId, Ring<LogRecord>>>,
    invocations: Mutex<HashMap<DbId, Ring<InvocationRecord>>>,
    usage: Mutex<HashMap<DbId, DatabaseUsage>>,
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
    rings: &Mutex<HashMap<DbId, Ring<T>>>,
    database: DbId,
    entry: T,
    size: usize,
    max_bytes: usize,
) {
    let mut rings = rings.lock().unwrap_or_else(PoisonError::into_inner);
    rings
        .entry(database)
        .or_default()
        .push(entry, size, max_bytes);
}

fn all<T: Clone>(rings: &Mutex<HashMap<DbId, Ring<T>>>, database: DbId) -> Vec<T> {
    let rings = rings.lock().unwrap_or_else(PoisonError::into_inner);
    rings.get(&database).map(Ring::all).unwrap_or_default()
}

impl EngineRecords {
    /// Keeps a log line.
    pub fn log(&self, record: LogRecord) {
        let database = record.database.id;
        let size = record.text.len() + record.trigger.len();
        push(&self.logs, database, record, size, BYTES_PER_DATABASE);
    }

    /// Keeps an invocation, and counts it in the metrics.
    pub fn invocation(&self, record: InvocationRecord) {
        self.metrics.invocation(&record);
        self.count_usage(
            record.database.id,
            &record.trigger,
            record.start_ns,
            |usage| {
                usage.add(&record);
            },
        );
        let database = record.database.id;
        let size = record.trigger.len() + record.error.as_ref().map_or(0, String::len);
        push(
            &self.invocations,
            database,
            record,
            size,
            BYTES_PER_DATABASE,
        );
    }

    /// Charges `trigger` of `database` the CPU time `cpu` the server took reading its
    /// flushes back from WAL files.
    pub fn wal_read(&self, database: &DatabaseRef, trigger: &str, cpu: Duration) {
        self.metrics.wal_read(&database.name, trigger, cpu);
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let nanos = u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX);
        self.count_usage(database.id, trigger, now, |usage| {
            usage.wal_read_ns = usage.wal_read_ns.saturating_add(nanos);
        });
    }

    /// Adds to the usage of `trigger` of `database` since the start and in the hour of
    /// `time_ns`, and forgets the hours past [`USAGE_HOURS`].
    fn count_usage(&self, database: DbId, trigger: &str, time_ns: i64, add: impl Fn(&mut Usage)) {
        let hour = time_ns.div_euclid(HOUR_NS) * HOUR_NS;
        let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        let database = usage.entry(database).or_default();
        add(database
            .totals
            .entry(Some(trigger.to_string()))
            .or_default());
        add(database
            .hourly
            .entry((hour, Some(trigger.to_string())))
            .or_default());
        let oldest = hour.saturating_sub((USAGE_HOURS - 1) * HOUR_NS);
        while let Some(entry) = database.hourly.first_entry() {
            if entry.key().0 >= oldest {
                break;
            }
            entry.remove();
        }
    }

    /// What `database`'s triggers used: per trigger since the server started, then per
    /// hour (oldest first) and trigger.
    pub fn usage(&self, database: DbId) -> Vec<UsageRow> {
        let usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(database) = usage.get(&database) else {
            return Vec::new();
        };
        let totals = database.totals.iter().map(|(trigger, usage)| UsageRow {
            trigger: trigger.clone(),
            hour_ns: None,
            usage: *usage,
        });
        let hourly = database
            .hourly
            .iter()
            .map(|((hour, trigger), usage)| UsageRow {
                trigger: trigger.clone(),
                hour_ns: Some(*hour),
                usage: *usage,
            });
        totals.chain(hourly).collect()
    }

    /// The counters of every call since the server started.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    /// The log lines of `database`'s triggers, oldest first.
    pub fn logs(&self, database: DbId) -> Vec<LogRecord> {
        all(&self.logs, database)
    }

    /// The invocations of `database`'s triggers, oldest first.
    pub fn invocations(&self, database: DbId) -> Vec<InvocationRecord> {
        all(&self.invocations, database)
    }

    /// Moves the usage of each database's deleted triggers (those not in `existing`,
    /// the databases with the names of their triggers) to its row of deleted triggers,
    /// in the metrics too.
    pub fn fold_deleted_triggers(&self, existing: &HashMap<DbId, (String, HashSet<String>)>) {
        let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        for (database, counted) in usage.iter_mut() {
            let Some((name, triggers)) = existing.get(database) else {
                continue;
            };
            for trigger in counted.fold_deleted(|trigger| triggers.contains(trigger)) {
                self.metrics.fold_deleted_trigger(name, &trigger);
            }
        }
    }

    /// Drops the records of the databases for which `gone(database)` holds (deleted
    /// ones).
    pub fn forget_databases(&self, gone: impl Fn(DbId) -> bool) {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|database, _| !gone(*database));
        self.invocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|database, _| !gone(*database));
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|database, _| !gone(*database));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: DbId = DbId::new(1);
    const QUIET: DbId = DbId::new(2);
    const NOISY: DbId = DbId::new(3);
    const WORDY: DbId = DbId::new(4);

    fn database(id: DbId) -> DatabaseRef {
        DatabaseRef {
            id,
            name: format!("db{id}"),
        }
    }

    fn line(id: DbId, time_ns: i64, text: String) -> LogRecord {
        LogRecord {
            time_ns,
            database: database(id),
            trigger: "t".into(),
            level: "INFO",
            text,
        }
    }

    fn call(trigger: &str, start_ns: i64, failed: bool) -> InvocationRecord {
        InvocationRecord {
            database: database(DB),
            trigger: trigger.into(),
            start_ns,
            duration_ns: 1_000,
            peak_memory_bytes: if failed { 100 } else { 50 },
            bytes_written: 3,
            cpu_ns: 7,
            query_rows: 2,
            http_requests: 0,
            http_response_bytes: 0,
            tmp_bytes: 0,
            outcome: if failed {
                Outcome::Error
            } else {
                Outcome::Success
            },
            error: failed.then(|| "boom".into()),
        }
    }

    #[test]
    fn reading_flushes_back_is_charged_to_the_trigger_and_is_no_call() {
        let records = EngineRecords::default();
        records.invocation(call("b", 0, false));
        records.wal_read(&database(DB), "b", Duration::from_nanos(7));
        records.wal_read(&database(DB), "b", Duration::from_nanos(5));
        let totals = &records.usage(DB)[0];
        assert_eq!(
            (totals.trigger.as_deref(), totals.hour_ns),
            (Some("b"), None)
        );
        assert_eq!(
            (totals.usage.wal_read_ns, totals.usage.invocations),
            (12, 1)
        );
        let metrics = records.metrics().encode();
        assert!(
            metrics.contains(
                "sluice_plugin_wal_read_cpu_seconds_total{database=\"db1\",trigger=\"b\"} 1.2e-8"
            ),
            "{metrics}"
        );
    }

    #[test]
    fn usage_adds_up_per_trigger_since_start_and_per_hour_for_a_week() {
        let records = EngineRecords::default();
        records.invocation(call("a", 0, false));
        records.invocation(call("a", HOUR_NS + 5, true));
        records.invocation(call("b", HOUR_NS + 6, false));
        let rows = records.usage(DB);
        let summary: Vec<(&str, Option<i64>, u64, u64, u64)> = rows
            .iter()
            .map(|r| {
                let u = &r.usage;
                (
                    r.trigger.as_deref().unwrap_or_default(),
                    r.hour_ns,
                    u.invocations,
                    u.errors,
                    u.bytes_written,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("a", None, 2, 1, 6),
                ("b", None, 1, 0, 3),
                ("a", Some(0), 1, 0, 3),
                ("a", Some(HOUR_NS), 1, 1, 3),
                ("b", Some(HOUR_NS), 1, 0, 3),
            ]
        );
        assert_eq!(rows[0].usage.peak_memory_bytes, 100, "the largest call's");
        assert_eq!((rows[0].usage.cpu_ns, rows[0].usage.query_rows), (14, 4));
        // A week later, the first hours are gone; the totals stay.
        records.invocation(call("a", (USAGE_HOURS + 1) * HOUR_NS, false));
        let hours: Vec<Option<i64>> = records.usage(DB).iter().map(|r| r.hour_ns).collect();
        assert_eq!(hours, [None, None, Some((USAGE_HOURS + 1) * HOUR_NS)]);
        assert_eq!(records.usage(DB)[0].usage.invocations, 3);
        records.forget_databases(|db| db == DB);
        assert!(records.usage(DB).is_empty());
    }

    #[test]
    fn deleted_triggers_usage_is_kept_in_one_row_of_their_database() {
        let records = EngineRecords::default();
        for (trigger, hour) in [("a", 0), ("gone", 0), ("also_gone", HOUR_NS), ("a", 1)] {
            records.invocation(call(trigger, hour, false));
        }
        let existing = HashMap::from([(DB, ("db1".to_string(), HashSet::from(["a".into()])))]);
        records.fold_deleted_triggers(&existing);
        records.fold_deleted_triggers(&existing);
        let rows = records.usage(DB);
        let summary: Vec<(Option<&str>, Option<i64>, u64)> = rows
            .iter()
            .map(|r| (r.trigger.as_deref(), r.hour_ns, r.usage.invocations))
            .collect();
        assert_eq!(
            summary,
            [
                (None, None, 2),
                (Some("a"), None, 2),
                (None, Some(0), 1),
                (Some("a"), Some(0), 2),
                (None, Some(HOUR_NS), 1),
            ]
        );
        let metrics = records.metrics().encode();
        let invocations = |trigger: &str| {
            let prefix = format!(
                "sluice_plugin_invocations_total{{database=\"db1\",trigger=\"{trigger}\",outcome=\"success\"}} "
            );
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(&prefix)?.parse::<u64>().ok())
        };
        assert_eq!(invocations(""), Some(2), "{metrics}");
        assert_eq!(invocations("a"), Some(2), "{metrics}");
        assert_eq!(invocations("gone"), None, "{metrics}");
    }

    #[test]
    fn a_database_never_pushes_out_another_ones_lines() {
        let records = EngineRecords::default();
        records.log(line(QUIET, 0, "kept".into()));
        for i in 0..CAPACITY + 5 {
            records.log(line(NOISY, i as i64, i.to_string()));
        }
        let noisy = records.logs(NOISY);
        assert_eq!(noisy.len(), CAPACITY);
        assert_eq!(noisy.first().map(|r| r.time_ns), Some(5), "0..5 dropped");
        assert_eq!(
            records.logs(QUIET).len(),
            1,
            "another database's line stays"
        );
        assert!(records.invocations(NOISY).is_empty());

        // Long lines are bounded by bytes too.
        let long = "x".repeat(1 << 20);
        for i in 0..20 {
            records.log(line(WORDY, i, long.clone()));
        }
        let wordy = records.logs(WORDY);
        assert!(wordy.len() < 20, "{} lines kept", wordy.len());
        assert_eq!(
            wordy.last().map(|r| r.time_ns),
            Some(19),
            "the newest stays"
        );
        assert!(wordy.iter().map(|r| r.text.len()).sum::<usize>() <= BYTES_PER_DATABASE);

        records.forget_databases(|database| database == NOISY);
        assert!(records.logs(NOISY).is_empty());
        assert_eq!(records.logs(QUIET).len(), 1);
    }
}
