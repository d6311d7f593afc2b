//! A database's tables as a DataFusion schema.

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use sluice_storage::WriteBuffer;
use sluice_storage::buffer::arrow_schema;
use std::fmt;
use std::sync::Arc;

/// The tables of one database. Planning asks for table names synchronously, so they
/// come from the catalog; a table's rows are snapshotted from the buffer only when a
/// query asks for that table.
pub struct DatabaseSchema {
    database: String,
    storage: Arc<WriteBuffer>,
}

impl DatabaseSchema {
    /// The schema of `database` in `storage`.
    pub fn new(database: &str, storage: Arc<WriteBuffer>) -> Self {
        Self { database: database.to_string(), storage }
    }
}

impl fmt::Debug for DatabaseSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSchema").field("database", &self.database).finish()
    }
}

#[async_trait]
impl SchemaProvider for DatabaseSchema {
    fn table_names(&self) -> Vec<String> {
        self.storage
            .catalog()
            .database(&self.database)
            .map(|db| db.tables.into_keys().collect())
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let (schema, batches) = match self.storage.table_batches(&self.database, name) {
            Some(found) => found,
            None => {
                let Some(table) = self.storage.catalog().database(&self.database).and_then(|db| db.tables.get(name).cloned())
                else {
                    return Ok(None);
                };
                (arrow_schema(&table.columns), Vec::new())
            }
        };
        Ok(Some(Arc::new(MemTable::try_new(schema, vec![batches])?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.storage.catalog().database(&self.database).is_some_and(|db| db.tables.contains_key(name))
    }
}
