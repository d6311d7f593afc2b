//! The `system` schema: the server's own state as tables, one file per table. Each is
//! built from the catalog when a query asks for it, so it is never stale.

mod triggers;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use sluice_catalog::Catalog;
use std::sync::Arc;

/// The schema's name in SQL: `system.processing_engine_triggers`.
pub const SYSTEM_SCHEMA: &str = "system";

/// One system table: its schema and how to compute its rows for a database.
trait SystemTable: Send + Sync {
    fn schema(&self) -> SchemaRef;
    fn rows(&self, catalog: &Catalog, database: &str) -> Result<RecordBatch>;
}

fn tables() -> Vec<(&'static str, Box<dyn SystemTable>)> {
    vec![
        ("processing_engine_triggers", Box::new(triggers::Triggers)),
        (
            "processing_engine_trigger_arguments",
            Box::new(triggers::TriggerArguments),
        ),
    ]
}

/// The `system` tables of one database.
#[derive(Debug)]
pub struct SystemSchema {
    catalog: Arc<Catalog>,
    database: String,
}

impl SystemSchema {
    /// The system tables as `database` sees them.
    pub fn new(catalog: Arc<Catalog>, database: &str) -> Self {
        Self {
            catalog,
            database: database.to_string(),
        }
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        tables()
            .into_iter()
            .map(|(name, _)| name.to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some((_, table)) = tables().into_iter().find(|(n, _)| *n == name) else {
            return Ok(None);
        };
        let batch = table.rows(&self.catalog, &self.database)?;
        Ok(Some(Arc::new(MemTable::try_new(
            table.schema(),
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        tables().iter().any(|(n, _)| *n == name)
    }
}
