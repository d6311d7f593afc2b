//! SQL over Sluice's tables, with DataFusion.
//!
//! Each query runs in a fresh `SessionContext` whose default schema `public.iox` lists the
//! database's tables ([`DatabaseSchema`]); a table ([`SluiceTable`]) is its rows in the
//! storage buffer unioned with its Parquet files, taken only when the query touches it. `information_schema` and `SHOW TABLES`
//! work, and `$name` placeholders take their values from the request.
//!
//! Column types are InfluxDB's: tags `Dictionary(Int32, Utf8)`, `time`
//! `Timestamp(Nanosecond, None)`, fields `Int64`, `UInt64`, `Float64`, `Utf8`, `Boolean`.

mod plugin_database;
mod plugin_rows;
mod schema;
mod system;
mod table;

pub use datafusion::arrow::datatypes::SchemaRef;
pub use datafusion::arrow::record_batch::RecordBatch;
pub use datafusion::scalar::ScalarValue;
pub use plugin_database::PluginDatabase;
pub use plugin_rows::query_result;
pub use schema::DatabaseSchema;
pub use system::{SYSTEM_SCHEMA, SystemSchema};
pub use table::SluiceTable;

use datafusion::catalog::CatalogProvider;
use datafusion::catalog::MemoryCatalogProvider;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SessionConfig, SessionContext};
use sluice_storage::WriteBuffer;
use std::sync::Arc;

/// The catalog and schema every database's tables live in, as upstream names them.
pub const DEFAULT_CATALOG: &str = "public";
/// See [`DEFAULT_CATALOG`].
pub const DEFAULT_SCHEMA: &str = "iox";

/// The URL the storage's object store is registered under in each session.
const STORE_URL: &str = "sluice://store";

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No such database.
    #[error("database not found: {0}")]
    DatabaseNotFound(String),
    /// The query is wrong: bad SQL, unknown table or column, missing parameter.
    #[error("{0}")]
    Plan(String),
    /// The query failed while running.
    #[error("{0}")]
    Execution(String),
}

impl From<DataFusionError> for QueryError {
    fn from(error: DataFusionError) -> Self {
        match error {
            DataFusionError::Execution(_)
            | DataFusionError::ResourcesExhausted(_)
            | DataFusionError::ArrowError(..) => Self::Execution(error.to_string()),
            _ => Self::Plan(error.to_string()),
        }
    }
}

/// A query's result.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    /// The result schema (also when there are no rows).
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
}

/// Runs SQL against the storage's tables.
#[derive(Clone)]
pub struct QueryEngine {
    storage: Arc<WriteBuffer>,
    records: Arc<sluice_engine::records::EngineRecords>,
    plugin_dir: Option<Arc<sluice_engine::plugin_dir::PluginDir>>,
}

/// The database that holds only server-wide system tables (`system.plugin_files` of
/// every trigger), as upstream's `_internal`. Its name is not a valid database name, so
/// nothing can be written to it.
pub const INTERNAL_DATABASE: &str = "_internal";

impl QueryEngine {
    /// An engine over `storage`.
    pub fn new(storage: Arc<WriteBuffer>) -> Self {
        Self {
            storage,
            records: Arc::default(),
            plugin_dir: None,
        }
    }

    /// The same engine, listing plugin files from `plugin_dir` in `system.plugin_files`.
    pub fn with_plugin_dir(
        mut self,
        plugin_dir: Arc<sluice_engine::plugin_dir::PluginDir>,
    ) -> Self {
        self.plugin_dir = Some(plugin_dir);
        self
    }

    /// The same engine, showing the processing engine's `records` in the system tables.
    pub fn with_engine_records(
        mut self,
        records: Arc<sluice_engine::records::EngineRecords>,
    ) -> Self {
        self.records = records;
        self
    }

    /// A session whose default schema is `database`'s tables.
    ///
    /// # Errors
    ///
    /// [`QueryError::DatabaseNotFound`].
    pub fn session(&self, database: &str) -> Result<SessionContext, QueryError> {
        if database != INTERNAL_DATABASE && !self.storage.catalog().has_database(database) {
            return Err(QueryError::DatabaseNotFound(database.to_string()));
        }
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(DEFAULT_CATALOG, DEFAULT_SCHEMA);
        let context = SessionContext::new_with_config(config);
        let store_url = ObjectStoreUrl::parse(STORE_URL)?;
        context.register_object_store(
            store_url.as_ref(),
            Arc::clone(self.storage.snapshots().store()),
        );
        let catalog = MemoryCatalogProvider::new();
        catalog.register_schema(
            DEFAULT_SCHEMA,
            Arc::new(DatabaseSchema::new(
                database,
                Arc::clone(&self.storage),
                store_url,
            )),
        )?;
        catalog.register_schema(
            SYSTEM_SCHEMA,
            Arc::new(SystemSchema::new(
                Arc::clone(self.storage.catalog()),
                Arc::clone(&self.records),
                self.plugin_dir.clone(),
                database,
            )),
        )?;
        context.register_catalog(DEFAULT_CATALOG, Arc::new(catalog));
        Ok(context)
    }

    /// Runs `sql` on `database` with `$name` parameters.
    ///
    /// # Errors
    ///
    /// See [`QueryError`].
    pub async fn sql(
        &self,
        database: &str,
        sql: &str,
        params: Vec<(String, ScalarValue)>,
    ) -> Result<QueryOutput, QueryError> {
        let context = self.session(database)?;
        let mut frame = context.sql(sql).await?;
        let mut wanted: Vec<String> = frame
            .logical_plan()
            .get_parameter_names()?
            .into_iter()
            .collect();
        wanted.sort();
        if let Some(missing) = wanted.iter().find(|name| {
            !params
                .iter()
                .any(|(given, _)| given == name.trim_start_matches('$'))
        }) {
            // Upstream's wording, which clients match on.
            return Err(QueryError::Plan(format!(
                "No value found for placeholder with name {missing}"
            )));
        }
        if !params.is_empty() {
            frame = frame.with_param_values(params)?;
        }
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        Ok(QueryOutput { schema, batches })
    }
}

#[cfg(test)]
mod tests;
