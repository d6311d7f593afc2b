//! The engine's metrics, in the OpenMetrics text format Prometheus scrapes (`GET
//! /metrics`): per trigger, its calls by outcome and what they consumed, and the flushes
//! WAL triggers skipped (their files removed for want of room, or damaged); per database, the bytes its caches hold. The counters grow for the life of the
//! process; `system.processing_engine_invocations` holds the recent calls one by one.

use crate::lag::WalPosition;
use crate::records::{InvocationRecord, Outcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sluice_plugin_api::InstanceStats;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// A trigger, as labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    database: String,
    trigger: String,
}

/// A database, as labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatabaseLabels {
    database: String,
}

/// A trigger and how a call ended (`success` or `error`), as labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    database: String,
    trigger: String,
    outcome: &'static str,
}

/// The counters, and the registry that names them.
#[derive(Debug)]
pub struct EngineMetrics {
    registry: Registry,
    invocations: Family<OutcomeLabels, Counter>,
    seconds: Family<TriggerLabels, Counter<f64, AtomicU64>>,
    bytes_written: Family<TriggerLabels, Counter>,
    cpu_seconds: Family<TriggerLabels, Counter<f64, AtomicU64>>,
    query_rows: Family<TriggerLabels, Counter>,
    http_requests: Family<TriggerLabels, Counter>,
    http_response_bytes: Family<TriggerLabels, Counter>,
    tmp_bytes: Family<TriggerLabels, Counter>,
    skipped_flushes: Family<TriggerLabels, Counter>,
    wal_read_seconds: Family<TriggerLabels, Counter<f64, AtomicU64>>,
    not_started: Family<TriggerLabels, Counter>,
    /// Calls that waited in the fair queue, and how long in all.
    queued: Family<TriggerLabels, Counter>,
    queue_seconds: Family<TriggerLabels, Counter<f64, AtomicU64>>,
    cache_bytes: Family<DatabaseLabels, Gauge>,
    running: Family<DatabaseLabels, Gauge>,
    waiting: Family<DatabaseLabels, Gauge>,
    instances: InstanceMetrics,
    wal_lag: WalLagMetrics,
}

/// How far behind the WAL's head each WAL trigger is, read at each scrape.
#[derive(Debug, Default)]
struct WalLagMetrics {
    flushes: Family<TriggerLabels, Gauge>,
    rows: Family<TriggerLabels, Gauge>,
    seconds: Family<TriggerLabels, Gauge<f64, AtomicU64>>,
}

impl WalLagMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "wal_lag_flushes",
            "Flushes written after a WAL trigger's cursor",
            self.flushes.clone(),
        );
        registry.register(
            "wal_lag_rows",
            "Rows a WAL trigger wants in the flushes after its cursor (absent when not known)",
            self.rows.clone(),
        );
        registry.register(
            "wal_lag_seconds",
            "Seconds since the oldest flush a WAL trigger has not finished with was written \
             (absent when not known)",
            self.seconds.clone(),
        );
    }

    fn set(&self, positions: &[WalPosition]) {
        self.flushes.clear();
        self.rows.clear();
        self.seconds.clear();
        for position in positions {
            let trigger = labels(&position.database, &position.trigger);
            self.flushes
                .get_or_create(&trigger)
                .set(i64::try_from(position.lag.flushes).unwrap_or(i64::MAX));
            if let Some(rows) = position.lag.rows {
                self.rows
                    .get_or_create(&trigger)
                    .set(i64::try_from(rows).unwrap_or(i64::MAX));
            }
            if let Some(seconds) = position.lag.seconds {
                self.seconds.get_or_create(&trigger).set(seconds);
            }
        }
    }
}

/// The sandbox's instances, read at each scrape.
#[derive(Debug, Default)]
struct InstanceMetrics {
    capacity: Gauge,
    live: Gauge,
    idle: Gauge,
    idle_memory_bytes: Gauge,
    spare: Gauge,
    compiled_code_bytes: Gauge,
    instantiated: Counter,
    spares_made: Counter,
    spares_taken: Counter,
    evicted: Counter,
    expired: Counter,
    waited: Counter,
    refused: Counter,
    compiled_code_hits: Counter,
    compiled_code_misses: Counter,
}

impl InstanceMetrics {
    fn register(&self, registry: &mut Registry) {
        let gauges = [
            (
                "instances_capacity",
                "Plugin instances that may be alive at once (--max-instances)",
                &self.capacity,
            ),
            (
                "instances_live",
                "Plugin instances alive now, running a call or idle",
                &self.live,
            ),
            (
                "instances_idle",
                "Plugin instances kept warm, idle, now",
                &self.idle,
            ),
            (
                "instances_idle_memory_bytes",
                "Linear memory of the idle plugin instances together",
                &self.idle_memory_bytes,
            ),
            (
                "instances_spare",
                "Spare plugin instances ready (--spare-instances): the runtime started, no plugin loaded",
                &self.spare,
            ),
            (
                "compiled_code_bytes",
                "File plugins' compiled code kept for their fresh instances to load",
                &self.compiled_code_bytes,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        let counters = [
            (
                "instances_instantiated",
                "Plugin instances made",
                &self.instantiated,
            ),
            (
                "instances_evicted",
                "Idle plugin instances dropped to make room or to stay within --instance-memory-budget",
                &self.evicted,
            ),
            (
                "instances_expired",
                "Idle plugin instances dropped after --instance-idle-time",
                &self.expired,
            ),
            (
                "instance_waits",
                "Calls that waited for a plugin instance, every one being busy",
                &self.waited,
            ),
            (
                "instance_waits_refused",
                "Calls refused after waiting --instance-wait for a plugin instance",
                &self.refused,
            ),
            (
                "instances_spares_made",
                "Spare plugin instances made",
                &self.spares_made,
            ),
            (
                "instances_spares_taken",
                "Calls without a warm instance that loaded their plugin into a spare one",
                &self.spares_taken,
            ),
            (
                "compiled_code_hits",
                "Loads of a file plugin into a fresh instance that found its compiled code",
                &self.compiled_code_hits,
            ),
            (
                "compiled_code_misses",
                "Loads of a file plugin into a fresh instance that compiled it",
                &self.compiled_code_misses,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
    }

    fn set(&self, stats: &InstanceStats) {
        let gauge = |gauge: &Gauge, value: u64| {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        gauge(&self.capacity, stats.capacity);
        gauge(&self.live, stats.live);
        gauge(&self.idle, stats.idle);
        gauge(&self.idle_memory_bytes, stats.idle_memory_bytes);
        gauge(&self.spare, stats.spare);
        gauge(&self.compiled_code_bytes, stats.compiled_code_bytes);
        // Counted by the sandbox; brought up to its count.
        let counter = |counter: &Counter, value: u64| {
            counter.inc_by(value.saturating_sub(counter.get()));
        };
        counter(&self.instantiated, stats.instantiated);
        counter(&self.evicted, stats.evicted);
        counter(&self.expired, stats.expired);
        counter(&self.waited, stats.waited);
        counter(&self.refused, stats.refused);
        counter(&self.spares_made, stats.spares_made);
        counter(&self.spares_taken, stats.spares_taken);
        counter(&self.compiled_code_hits, stats.compiled_code_hits);
        counter(&self.compiled_code_misses, stats.compiled_code_misses);
    }
}

impl Default for EngineMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice_plugin");
        let invocations = Family::<OutcomeLabels, Counter>::default();
        let seconds = Family::<TriggerLabels, Counter<f64, AtomicU64>>::default();
        let bytes_written = Family::<TriggerLabels, Counter>::default();
        let skipped_flushes = Family::<TriggerLabels, Counter>::default();
        let wal_read_seconds = Family::<TriggerLabels, Counter<f64, AtomicU64>>::default();
        let not_started = Family::<TriggerLabels, Counter>::default();
        let queued = Family::<TriggerLabels, Counter>::default();
        let queue_seconds = Family::<TriggerLabels, Counter<f64, AtomicU64>>::default();
        let cpu_seconds = Family::<TriggerLabels, Counter<f64, AtomicU64>>::default();
        let query_rows = Family::<TriggerLabels, Counter>::default();
        let http_requests = Family::<TriggerLabels, Counter>::default();
        let http_response_bytes = Family::<TriggerLabels, Counter>::default();
        let tmp_bytes = Family::<TriggerLabels, Counter>::default();
        let cache_bytes = Family::<DatabaseLabels, Gauge>::default();
        registry.register(
            "cache_bytes",
            "Bytes a database's plugin caches (its triggers' and its shared one) hold",
            cache_bytes.clone(),
        );
        registry.register(
            "cpu_seconds",
            "CPU time the plugins' code took in calls, failed ones too",
            cpu_seconds.clone(),
        );
        registry.register(
            "query_rows",
            "Rows the plugins' queries returned to them",
            query_rows.clone(),
        );
        registry.register(
            "http_requests",
            "Outbound HTTP requests the plugins sent, to the destinations granted them",
            http_requests.clone(),
        );
        registry.register(
            "http_response_bytes",
            "Bytes of the responses to the plugins' outbound HTTP requests",
            http_response_bytes.clone(),
        );
        registry.register(
            "tmp_bytes",
            "Bytes the plugins' calls wrote in their /tmp, 4 KiB for each file created",
            tmp_bytes.clone(),
        );
        registry.register(
            "invocations",
            "Plugin calls of each trigger, by outcome",
            invocations.clone(),
        );
        registry.register(
            "duration_seconds",
            "Time spent in plugin calls, instantiation included",
            seconds.clone(),
        );
        registry.register(
            "bytes_written",
            "Line protocol calls handed to the host to write (a failed call's is discarded)",
            bytes_written.clone(),
        );
        registry.register(
            "skipped_flushes",
            "WAL flushes a trigger skipped, whole or in part: their files removed before it came to them (--wal-retention-mib), damaged, or unreadable",
            skipped_flushes.clone(),
        );
        registry.register(
            "wal_read_cpu_seconds",
            "CPU time the server took reading a WAL trigger's flushes back from WAL files, the trigger being behind the flushes kept in memory",
            wal_read_seconds.clone(),
        );
        registry.register(
            "calls_not_started",
            "Calls of a trigger that never started for want of a plugin instance",
            not_started.clone(),
        );
        registry.register(
            "calls_queued",
            "Calls of a trigger that waited in the fair queue for a plugin instance, every one being busy",
            queued.clone(),
        );
        registry.register(
            "queue_seconds",
            "Time calls of a trigger waited in the fair queue for a plugin instance, refused ones too",
            queue_seconds.clone(),
        );
        let instances = InstanceMetrics::default();
        instances.register(&mut registry);
        let wal_lag = WalLagMetrics::default();
        wal_lag.register(&mut registry);
        let running = Family::<DatabaseLabels, Gauge>::default();
        let waiting = Family::<DatabaseLabels, Gauge>::default();
        registry.register(
            "calls_running",
            "Plugin calls of a database running now",
            running.clone(),
        );
        registry.register(
            "calls_waiting",
            "Plugin calls of a database waiting for an instance, every one being busy",
            waiting.clone(),
        );
        Self {
            registry,
            invocations,
            seconds,
            bytes_written,
            cpu_seconds,
            query_rows,
            http_requests,
            http_response_bytes,
            tmp_bytes,
            skipped_flushes,
            wal_read_seconds,
            not_started,
            queued,
            queue_seconds,
            cache_bytes,
            running,
            waiting,
            instances,
            wal_lag,
        }
    }
}

/// Adds the counter of `from` in `family` to that of `to`, and removes `from`'s.
fn fold<L, N, A>(family: &Family<L, Counter<N, A>>, from: &L, to: &L)
where
    L: Clone + std::hash::Hash + Eq,
    A: prometheus_client::metrics::counter::Atomic<N> + Default,
{
    let Some(value) = family.get(from).map(|counter| counter.get()) else {
        return;
    };
    family.remove(from);
    family.get_or_create(to).inc_by(value);
}

fn labels(database: &str, trigger: &str) -> TriggerLabels {
    TriggerLabels {
        database: database.to_string(),
        trigger: trigger.to_string(),
    }
}

impl EngineMetrics {
    /// Counts a finished call.
    pub fn invocation(&self, record: &InvocationRecord) {
        let trigger = labels(&record.database.name, &record.trigger);
        let outcome = record.outcome.as_str();
        self.invocations
            .get_or_create(&OutcomeLabels {
                database: record.database.name.clone(),
                trigger: record.trigger.clone(),
                outcome,
            })
            .inc();
        self.seconds
            .get_or_create(&trigger)
            .inc_by(record.duration_ns as f64 / 1e9);
        self.bytes_written
            .get_or_create(&trigger)
            .inc_by(record.bytes_written);
        self.cpu_seconds
            .get_or_create(&trigger)
            .inc_by(record.cpu_ns as f64 / 1e9);
        self.query_rows
            .get_or_create(&trigger)
            .inc_by(record.query_rows);
        self.http_requests
            .get_or_create(&trigger)
            .inc_by(record.http_requests);
        self.http_response_bytes
            .get_or_create(&trigger)
            .inc_by(record.http_response_bytes);
        self.tmp_bytes
            .get_or_create(&trigger)
            .inc_by(record.tmp_bytes);
    }

    /// Sets what each database's caches hold, `(database name, bytes)`, forgetting the
    /// databases not listed (deleted ones).
    pub fn set_cache_bytes(&self, held: impl IntoIterator<Item = (String, u64)>) {
        self.cache_bytes.clear();
        for (database, bytes) in held {
            self.cache_bytes
                .get_or_create(&DatabaseLabels { database })
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// Moves the counters of `trigger` of `database`, deleted, to the database's series
    /// for deleted triggers (`trigger=""`): they stay counted, and the series of
    /// triggers created and deleted again and again do not pile up.
    pub fn fold_deleted_trigger(&self, database: &str, trigger: &str) {
        let (from, to) = (labels(database, trigger), labels(database, ""));
        for outcome in [Outcome::Success, Outcome::Error, Outcome::Skipped].map(Outcome::as_str) {
            let labelled = |trigger: &str| OutcomeLabels {
                database: database.to_string(),
                trigger: trigger.to_string(),
                outcome,
            };
            fold(&self.invocations, &labelled(trigger), &labelled(""));
        }
        for counters in [
            &self.bytes_written,
            &self.query_rows,
            &self.http_requests,
            &self.http_response_bytes,
            &self.tmp_bytes,
            &self.skipped_flushes,
            &self.not_started,
            &self.queued,
        ] {
            fold(counters, &from, &to);
        }
        for seconds in [
            &self.seconds,
            &self.cpu_seconds,
            &self.queue_seconds,
            &self.wal_read_seconds,
        ] {
            fold(seconds, &from, &to);
        }
    }

    /// Sets the calls of each database running and waiting now, `(database name,
    /// running, waiting)`, forgetting the databases not listed.
    pub fn set_calls(&self, calls: impl IntoIterator<Item = (String, usize, usize)>) {
        self.running.clear();
        self.waiting.clear();
        let gauge = |count: usize| i64::try_from(count).unwrap_or(i64::MAX);
        for (database, running, waiting) in calls {
            let labels = DatabaseLabels { database };
            self.running.get_or_create(&labels).set(gauge(running));
            self.waiting.get_or_create(&labels).set(gauge(waiting));
        }
    }

    /// Sets what the executor's instances are now.
    pub fn set_instances(&self, stats: &InstanceStats) {
        self.instances.set(stats);
    }

    /// Sets where the WAL triggers are now.
    pub fn set_wal_positions(&self, positions: &[WalPosition]) {
        self.wal_lag.set(positions);
    }

    /// Counts a call that never started for want of an instance.
    pub fn not_started(&self, database: &str, trigger: &str) {
        self.not_started
            .get_or_create(&labels(database, trigger))
            .inc();
    }

    /// Counts a call that waited `waited` in the fair queue, whether it then ran or not.
    pub fn queued(&self, database: &str, trigger: &str, waited: Duration) {
        let trigger = labels(database, trigger);
        self.queued.get_or_create(&trigger).inc();
        self.queue_seconds
            .get_or_create(&trigger)
            .inc_by(waited.as_secs_f64());
    }

    /// Counts `flushes` a WAL trigger skipped.
    pub fn skipped_flushes(&self, database: &str, trigger: &str, flushes: u64) {
        self.skipped_flushes
            .get_or_create(&labels(database, trigger))
            .inc_by(flushes);
    }

    /// Adds `cpu` to the time spent reading flushes of `trigger` of `database` back.
    pub fn wal_read(&self, database: &str, trigger: &str, cpu: Duration) {
        self.wal_read_seconds
            .get_or_create(&labels(database, trigger))
            .inc_by(cpu.as_secs_f64());
    }

    /// Every metric, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_per_trigger_and_outcome() {
        let metrics = EngineMetrics::default();
        let call = |error: Option<&str>| InvocationRecord {
            database: sluice_catalog::DatabaseRef {
                id: sluice_catalog::DbId::new(1),
                name: "db".into(),
            },
            trigger: "t".into(),
            start_ns: 0,
            duration_ns: 250_000_000,
            peak_memory_bytes: 0,
            bytes_written: 10,
            cpu_ns: 5_000_000,
            query_rows: 3,
            http_requests: 0,
            http_response_bytes: 0,
            tmp_bytes: 0,
            outcome: if error.is_some() {
                crate::records::Outcome::Error
            } else {
                crate::records::Outcome::Success
            },
            error: error.map(str::to_string),
        };
        metrics.invocation(&call(None));
        metrics.invocation(&call(None));
        metrics.invocation(&call(Some("boom")));
        metrics.skipped_flushes("db", "t", 1);
        let text = metrics.encode();
        for expected in [
            r#"sluice_plugin_invocations_total{database="db",trigger="t",outcome="success"} 2"#,
            r#"sluice_plugin_invocations_total{database="db",trigger="t",outcome="error"} 1"#,
            r#"sluice_plugin_duration_seconds_total{database="db",trigger="t"} 0.75"#,
            r#"sluice_plugin_query_rows_total{database="db",trigger="t"} 9"#,
            r#"sluice_plugin_skipped_flushes_total{database="db",trigger="t"} 1"#,
        ] {
            assert!(text.contains(expected), "{expected} not in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
