//! A database's tables as a DataFusion schema.

use crate::table::SluiceTable;
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::error::Result;
use sluice_storage::WriteBuffer;
use std::fmt;
use std::sync::Arc;

/// The tables of one database. Planning asks for table names synchronously, so they
/// come from the catalog; a table's rows (in memory and in Parquet files) are taken
/// from storage only when a query asks for that table.
pub struct DatabaseSchema {
    database: String,
    storage: Arc<WriteBuffer>,
    store_url: ObjectStoreUrl,
}

impl DatabaseSchema {
    /// The schema of `database` in `storage`, whose object store is registered as
    /// `store_url`.
    pub fn new(database: &str, storage: Arc<WriteBuffer>, store_url: ObjectStoreUrl) -> Self {
        Self {
            database: database.to_string(),
            storage,
            store_url,
        }
    }
}

impl fmt::Debug for DatabaseSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSchema")
            .field("database", &self.database)
            .finish()
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
        Ok(self.storage.table_data(&self.database, name).map(|data| {
            Arc::new(SluiceTable::new(data, self.store_url.clone())) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.storage
            .catalog()
            .database(&self.database)
            .is_some_and(|db| db.tables.contains_key(name))
    }
}
