//! A database's tables as a DataFusion schema.

use crate::table::SluiceTable;
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::error::{DataFusionError, Result};
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

/// Which of a database's tables a query may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readable {
    /// Its tables and its system tables: a token with `read` on it.
    All,
    /// Its system tables only: a token that manages it without reading its data.
    SystemTables,
}

/// A database's tables as a query that may read only its system tables sees them: none
/// is listed, and naming one is refused with [`SystemTablesOnly`].
#[derive(Debug)]
pub(crate) struct HiddenTables {
    database: String,
}

impl HiddenTables {
    pub(crate) fn new(database: &str) -> Self {
        Self {
            database: database.to_string(),
        }
    }
}

/// A query that may read only the system tables of its database named one of its tables.
#[derive(Debug, thiserror::Error)]
#[error(
    "the token may read only the system tables of database `{database}`: reading table \
     `{table}` needs the read permission on it"
)]
pub struct SystemTablesOnly {
    database: String,
    table: String,
}

#[async_trait]
impl SchemaProvider for HiddenTables {
    fn table_names(&self) -> Vec<String> {
        Vec::new()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::External(Box::new(SystemTablesOnly {
            database: self.database.clone(),
            table: name.to_string(),
        })))
    }

    fn table_exist(&self, _name: &str) -> bool {
        false
    }
}
