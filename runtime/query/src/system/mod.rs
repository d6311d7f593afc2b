//! The `system` schema: the server's own state as tables, one file per table. Each is
//! built from the catalog when a query asks for it, so it is never stale.

mod engine;
mod plugin_files;
mod storage;
mod triggers;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use sluice_catalog::Catalog;
use sluice_engine::cache::CacheStore;
use sluice_engine::manager::TriggerManager;
use sluice_engine::plugin_dir::PluginAreas;
use sluice_engine::records::EngineRecords;
use sluice_storage::WriteBuffer;
use std::sync::Arc;

/// The schema's name in SQL: `system.processing_engine_triggers`.
pub const SYSTEM_SCHEMA: &str = "system";

/// One system table: its schema and how to compute its rows for a database.
trait SystemTable: Send + Sync {
    fn schema(&self) -> SchemaRef;
    fn rows(&self, catalog: &Catalog, database: &str) -> Result<RecordBatch>;
}

/// What the system tables show of the processing engine.
#[derive(Clone, Default)]
pub struct EngineViews {
    /// Its recent log lines and invocations, and its usage.
    pub records: Arc<EngineRecords>,
    /// The plugins' caches.
    pub cache: Option<Arc<CacheStore>>,
    /// Its WAL and schedule triggers.
    pub triggers: Option<Arc<TriggerManager>>,
}

/// The `system` tables of one database.
pub struct SystemSchema {
    storage: Arc<WriteBuffer>,
    engine: EngineViews,
    plugin_dir: Option<Arc<PluginAreas>>,
    database: String,
}

impl std::fmt::Debug for SystemSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemSchema")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl SystemSchema {
    /// The system tables as `database` sees them: of `storage` (its catalog and what
    /// start-up found wrong), the processing `engine` and the plugin directory.
    pub fn new(
        storage: Arc<WriteBuffer>,
        engine: EngineViews,
        plugin_dir: Option<Arc<PluginAreas>>,
        database: &str,
    ) -> Self {
        Self {
            storage,
            engine,
            plugin_dir,
            database: database.to_string(),
        }
    }

    fn tables(&self) -> Vec<(&'static str, Box<dyn SystemTable>)> {
        vec![
            ("processing_engine_triggers", Box::new(triggers::Triggers)),
            (
                "processing_engine_trigger_arguments",
                Box::new(triggers::TriggerArguments),
            ),
            (
                "processing_engine_logs",
                Box::new(engine::Logs(Arc::clone(&self.engine.records))),
            ),
            (
                "processing_engine_invocations",
                Box::new(engine::Invocations(Arc::clone(&self.engine.records))),
            ),
            (
                "processing_engine_usage",
                Box::new(engine::Usage(Arc::clone(&self.engine.records))),
            ),
            (
                "processing_engine_cache",
                Box::new(engine::Cache(self.engine.cache.clone())),
            ),
            (
                "processing_engine_wal_triggers",
                Box::new(triggers::WalTriggers(self.engine.triggers.clone())),
            ),
            (
                "plugin_files",
                Box::new(plugin_files::PluginFiles(self.plugin_dir.clone())),
            ),
            (
                "storage_problems",
                Box::new(storage::StorageProblems(Arc::clone(&self.storage))),
            ),
        ]
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables()
            .into_iter()
            .map(|(name, _)| name.to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some((_, table)) = self.tables().into_iter().find(|(n, _)| *n == name) else {
            return Ok(None);
        };
        let batch = table.rows(self.storage.catalog(), &self.database)?;
        Ok(Some(Arc::new(MemTable::try_new(
            table.schema(),
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables().iter().any(|(n, _)| *n == name)
    }
}
