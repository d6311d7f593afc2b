//! The Sluice processing engine: what runs plugins, when, and with what.
//!
//! This crate never touches wasmtime or DataFusion: it runs plugins through the
//! [`PluginExecutor`](sluice_plugin_api::PluginExecutor) trait and serves their host
//! calls through [`HostServices`](sluice_plugin_api::HostServices). So far it holds:
//!
//! - [`cache`]: the plugin cache, per trigger and shared, with time to live;
//! - [`batches`]: turning parsed line protocol into the table batches a WAL plugin gets;
//! - [`dry_run`]: running a plugin once without touching the database, reporting its
//!   logs, the writes it would make and its errors (the `test` commands);
//! - [`host`]: the host services of a trigger on the real database, reached through the
//!   [`Database`](host::Database) trait;
//! - [`invoke`]: one invocation of a trigger's plugin on the real database;
//! - [`requests`]: request triggers, served at `/api/v3/engine/<path>`;
//! - [`plugin_dir`]: the plugin directory as the HTTP API changes it: uploads, atomic
//!   package replacement, the files of each plugin; the shared directory and each
//!   database's area;
//! - [`environment`]: package environments an install changes whole;
//! - [`metrics`]: per-trigger counters for Prometheus;
//! - [`fair`] and [`spares`]: turns on the executor's instances and on the CPU, shared
//!   fairly between databases, and the server's own turns for spare instances;
//! - [`records`]: recent plugin log lines and invocations, for the system tables;
//! - [`manager`] and [`schedule`]: WAL and schedule triggers, one task each; WAL
//!   triggers read the [`flush_log`] from their [`cursors`] at their own pace, so that no
//!   trigger stalls ingest or another trigger, and none loses a flush;
//! - [`background`]: the threads of lower priority WAL and schedule triggers run on, so
//!   that what clients wait for goes first on a busy machine.
//!
//! ```
//! use sluice_engine::batches::table_batches;
//! let parsed = sluice_lp::parse("cpu,host=a usage=1i 5", sluice_lp::Precision::Nanosecond, 0);
//! let batches = table_batches(&parsed.lines).batches;
//! assert_eq!(batches[0].table_name, "cpu");
//! assert_eq!(batches[0].row_count, 1);
//! ```

pub mod background;
pub mod batches;
pub mod cache;
pub mod cursors;
pub mod disk;
pub mod dry_run;
pub mod egress;
pub mod environment;
pub mod fair;
pub mod flush_log;
pub mod host;
pub mod invoke;
pub mod lag;
pub mod manager;
pub mod metrics;
pub mod plugin_dir;
pub mod records;
pub mod requests;
pub mod schedule;
pub mod skips;
pub mod spares;
mod write_quota;

/// The processing engine of a server: its request triggers, and its WAL and schedule
/// triggers.
pub struct ProcessingEngine {
    /// Serves `/api/v3/engine/<path>`.
    pub requests: requests::RequestTriggers,
    /// Runs WAL and schedule triggers, following the catalog's published versions; wait
    /// for [`settled`](manager::TriggerManager::settled) after changing triggers to know
    /// the change is in effect.
    pub triggers: std::sync::Arc<manager::TriggerManager>,
    /// Recent plugin log lines and invocations.
    pub records: std::sync::Arc<records::EngineRecords>,
    /// Runs every plugin; also the test runs of the plugin test endpoints.
    pub invoker: std::sync::Arc<invoke::Invoker>,
}

impl ProcessingEngine {
    /// Starts the triggers of `catalog`, run by `invoker`, following each version of the
    /// catalog published on `versions`, WAL triggers reading `feed`; `disable` disables a
    /// trigger in the catalog, durably (for `error_behavior` disable). Needs a Tokio
    /// runtime.
    pub fn start(
        catalog: std::sync::Arc<sluice_catalog::Catalog>,
        versions: tokio::sync::watch::Receiver<u64>,
        invoker: std::sync::Arc<invoke::Invoker>,
        disable: impl Fn(&str, sluice_catalog::TriggerId) -> Result<(), String> + Send + Sync + 'static,
        feed: manager::WalFeed,
    ) -> std::sync::Arc<Self> {
        let records = std::sync::Arc::clone(invoker.records());
        let triggers = manager::TriggerManager::start(
            std::sync::Arc::clone(&catalog),
            versions,
            std::sync::Arc::clone(&invoker),
            disable,
            feed,
        );
        let requests = requests::RequestTriggers::new(catalog, std::sync::Arc::clone(&invoker));
        std::sync::Arc::new(Self {
            requests,
            triggers,
            records,
            invoker,
        })
    }
}
