//! The storage's metrics, in the OpenMetrics text format (`GET /metrics`): snapshots by
//! outcome, tables a snapshot left out, writes refused for memory, and, read when
//! scraped, the rows and bytes in memory and the problems start-up found.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// How a snapshot ended (`written`, `partial`, `failed`), as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// The counters and gauges, and the registry that names them.
#[derive(Debug)]
pub struct StorageMetrics {
    registry: Registry,
    snapshots: Family<Outcome, Counter>,
    tables_left_out: Counter,
    writes_refused: Counter,
    buffer_rows: Gauge,
    buffer_bytes: Gauge,
    problems: Gauge,
}

impl Default for StorageMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice_storage");
        let this = Self {
            registry: Registry::default(),
            snapshots: Family::default(),
            tables_left_out: Counter::default(),
            writes_refused: Counter::default(),
            buffer_rows: Gauge::default(),
            buffer_bytes: Gauge::default(),
            problems: Gauge::default(),
        };
        registry.register("snapshots", "Snapshots, by outcome", this.snapshots.clone());
        registry.register(
            "tables_left_out",
            "Tables a snapshot could not write (named in the log)",
            this.tables_left_out.clone(),
        );
        registry.register(
            "writes_refused_for_memory",
            "Writes answered 503 because the rows in memory were at --buffer-memory-mib",
            this.writes_refused.clone(),
        );
        registry.register(
            "buffer_rows",
            "Rows in memory, not yet in Parquet",
            this.buffer_rows.clone(),
        );
        registry.register(
            "buffer_bytes",
            "Memory of the rows not yet in Parquet, as --buffer-memory-mib counts it",
            this.buffer_bytes.clone(),
        );
        registry.register(
            "problems",
            "Problems with the stored data found at start-up and not cleared",
            this.problems.clone(),
        );
        Self { registry, ..this }
    }
}

impl StorageMetrics {
    /// Counts a snapshot that wrote every table, some, or none.
    pub(crate) fn snapshot(&self, files: usize, left_out: usize) {
        let outcome = match (files, left_out) {
            (_, 0) => "written",
            (0, _) => "failed",
            _ => "partial",
        };
        self.snapshots.get_or_create(&Outcome { outcome }).inc();
        self.tables_left_out.inc_by(left_out as u64);
    }

    /// Counts a snapshot that wrote nothing (its manifest failed).
    pub(crate) fn snapshot_failed(&self) {
        self.snapshots
            .get_or_create(&Outcome { outcome: "failed" })
            .inc();
    }

    /// Counts a write refused for memory.
    pub(crate) fn write_refused(&self) {
        self.writes_refused.inc();
    }

    /// Every metric in the OpenMetrics text format, with the gauges as given.
    pub(crate) fn encode(&self, rows: usize, bytes: usize, problems: usize) -> String {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.buffer_rows.set(gauge(rows));
        self.buffer_bytes.set(gauge(bytes));
        self.problems.set(gauge(problems));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
