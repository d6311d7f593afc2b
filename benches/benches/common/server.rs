//! The servers the benches start in their own process: their storage, their engine,
//! their triggers and their HTTP side.

use sluice_catalog::{Catalog, ErrorBehavior, Quotas, Trigger, TriggerSettings, TriggerSpec};
use sluice_engine::ProcessingEngine;
use sluice_engine::cache::CacheStore;
use sluice_engine::cursors::Cursors;
use sluice_engine::fair::FairTurns;
use sluice_engine::invoke::Invoker;
use sluice_engine::manager::{DEFAULT_ROWS_PER_CALL, WalFeed};
use sluice_engine::plugin_dir::PluginAreas;
use sluice_http::{AppState, Authentication, router};
use sluice_plugin_api::{Limits, PluginExecutor};
use sluice_query::wal_feed::{FlushFeed, StorageWal};
use sluice_query::{PluginDatabase, QueryEngine};
use sluice_sandbox::{Sandbox, SandboxConfig};
use sluice_storage::{StorageConfig, WriteBuffer};
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Writes one transformed row to `cooked` for each row of `raw`.
#[allow(dead_code, reason = "not every bench runs it")]
pub const TRANSFORM: &str = r#"
def process_writes(influxdb3_local, table_batches, args=None):
    for batch in table_batches:
        if batch["table_name"] != "raw":
            continue
        for row in batch["rows"]:
            influxdb3_local.write(LineBuilder("cooked").tag("host", row["host"]).float64_field("celsius", (row["f"] - 32) / 1.8).time_ns(row["time"]))
"#;

/// What a server's calls run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code, reason = "not every bench runs each")]
pub enum Instances {
    /// A fresh instance per call.
    Fresh,
    /// The triggers' warm instances, the engine alone.
    Warm,
    /// Warm instances, as `sluice serve` runs them: with the database quotas, the fair
    /// turns for instances and the CPU turns.
    WarmShared,
}

/// A server in `dir`, its plugin directory holding `plugins` (name, code), its catalog
/// the databases and triggers of `triggers` (database, trigger), its calls run by
/// `sandbox` on `instances`, flushing every 10 ms or 10,000 lines; returns its URL, its
/// storage and its engine.
#[allow(dead_code, reason = "not every bench starts one")]
pub async fn start(
    dir: &Path,
    sandbox: Arc<Sandbox>,
    plugins: &[(&str, &str)],
    triggers: &[(&str, Trigger)],
    instances: Instances,
) -> (String, Arc<WriteBuffer>, Arc<ProcessingEngine>) {
    start_with(dir, (sandbox, None), plugins, triggers, instances).await
}

/// [`start`], with `pyo3` running the triggers of [`sluice_catalog::Runtime::Pyo3`].
#[allow(dead_code, reason = "not every bench starts one")]
pub async fn start_with(
    dir: &Path,
    (sandbox, pyo3): (Arc<Sandbox>, Option<Arc<dyn PluginExecutor>>),
    plugins: &[(&str, &str)],
    triggers: &[(&str, Trigger)],
    instances: Instances,
) -> (String, Arc<WriteBuffer>, Arc<ProcessingEngine>) {
    let plugin_dir = dir.join("plugins");
    std::fs::create_dir_all(&plugin_dir).expect("plugin dir");
    for (name, code) in plugins {
        std::fs::write(plugin_dir.join(name), code).expect("plugin written");
    }
    let (storage, _) = WriteBuffer::open(StorageConfig::local(dir.join("data")).expect("config"))
        .await
        .expect("opens");
    let catalog: Arc<Catalog> = Arc::clone(storage.catalog());
    for (database, trigger) in triggers {
        if !catalog.has_database(database) {
            catalog.create_database(database).expect("database");
        }
        catalog
            .create_trigger(database, trigger.clone())
            .expect("trigger");
    }
    let database = PluginDatabase {
        storage: Arc::clone(&storage),
        query: QueryEngine::new(Arc::clone(&storage)),
    };
    let mut invoker = Invoker::new(
        sandbox,
        Arc::new(database),
        Arc::new(CacheStore::default()),
        Arc::new(PluginAreas::new(
            plugin_dir,
            dir.join("plugin-areas"),
            dir.join("plugin-environments"),
        )),
        Limits::default(),
        instances != Instances::Fresh,
    );
    if let Some(pyo3) = pyo3 {
        invoker = invoker.with_pyo3(pyo3);
    }
    if instances == Instances::WarmShared {
        let config = SandboxConfig::default();
        invoker = invoker
            .with_quotas(Arc::clone(&catalog), Quotas::DEFAULT)
            .with_fair_turns(FairTurns::new(
                config.max_instances as usize,
                config.instance_wait,
            ))
            .with_cpu_turns(FairTurns::cpu(
                tokio::runtime::Handle::current().metrics().num_workers(),
                config.epoch_tick,
            ))
            .with_background(background());
    }
    let versions = storage.catalog_store().subscribe();
    let feed = WalFeed {
        wal: Arc::new(StorageWal(Arc::downgrade(&storage))),
        cursors: Cursors::in_memory(),
        rows_per_call: DEFAULT_ROWS_PER_CALL,
    };
    let engine = ProcessingEngine::start(catalog, versions, Arc::new(invoker), |_, _| Ok(()), feed);
    storage.set_flush_observer(Arc::new(FlushFeed(Arc::clone(&engine.triggers))));
    storage.spawn_flusher(Duration::from_millis(10), 10_000);
    (serve(&storage, &engine).await, storage, engine)
}

/// The runtime WAL and schedule triggers run on, as `sluice serve` makes it (its
/// niceness from `SLUICE_BACKGROUND_NICENESS`, as there): one for the process, never
/// dropped.
fn background() -> tokio::runtime::Handle {
    static BACKGROUND: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        let niceness = std::env::var("SLUICE_BACKGROUND_NICENESS")
            .ok()
            .and_then(|nice| nice.parse().ok())
            .unwrap_or(sluice_engine::background::DEFAULT_NICENESS);
        sluice_engine::background::runtime(
            niceness,
            workers,
            sluice_query::QUERY_THREAD_STACK_BYTES,
        )
        .expect("the background runtime starts")
    });
    BACKGROUND.handle().clone()
}

/// Serves `storage` and `engine` on a loopback port, without authentication, as
/// `sluice serve` would; returns the server's URL.
pub async fn serve(storage: &Arc<WriteBuffer>, engine: &Arc<ProcessingEngine>) -> String {
    let state = AppState {
        storage: Arc::clone(storage),
        query: QueryEngine::new(Arc::clone(storage)),
        max_request_bytes: 64 << 20,
        body_timeout: Duration::from_secs(30),
        body_memory: Arc::new(tokio::sync::Semaphore::new(1 << 20)),
        authentication: Authentication::Disabled,
        plugin_dir: None,
        plugin_repo: None,
        allowed_triggers: None,
        engine: Some(Arc::clone(engine)),
        virtual_env: None,
        package_manager: sluice_http::packages::PackageManager::Disabled,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    format!("http://{address}")
}

/// A trigger of `plugin` on `spec`, as the admin would create it.
pub fn trigger(name: &str, spec: &str, plugin: &str, run_async: bool) -> Trigger {
    Trigger {
        id: Default::default(),
        trigger_name: name.into(),
        plugin_filename: plugin.into(),
        plugin_area: Default::default(),
        trigger: TriggerSpec::parse(spec).expect("a valid spec"),
        trigger_settings: TriggerSettings {
            run_async,
            error_behavior: ErrorBehavior::Log,
            ..TriggerSettings::default()
        },
        trigger_arguments: None,
        disabled: false,
        granted_databases: Vec::new(),
        allowed_hosts: Vec::new(),
        reach: Default::default(),
        public: false,
        limits: Default::default(),
        runtime: Default::default(),
    }
}
