//! SQL over Sluice's tables, with DataFusion.
//!
//! Each query runs in a fresh `SessionContext` whose default schema `public.iox` lists the
//! database's tables ([`DatabaseSchema`]); a table ([`SluiceTable`]) is its rows in the
//! storage buffer unioned with its Parquet files, taken only when the query touches it. `information_schema` and `SHOW TABLES`
//! work, and `$name` placeholders take their values from the request.
//!
//! Column types are InfluxDB's: tags `Dictionary(Int32, Utf8)`, `time`
//! `Timestamp(Nanosecond, None)`, fields `Int64`, `UInt64`, `Float64`, `Utf8`, `Boolean`.
//!
//! SQL never touches the host: a query may only read. DDL (`CREATE EXTERNAL TABLE`),
//! DML (`INSERT`, `COPY … TO`) and statements (`SET`, `PREPARE`) are refused when planned,
//! no object store but the database's own is registered (no `file://`), nothing spills
//! to disk, and every query runs within [`QueryLimits`]: memory from a pool the process
//! shares, bounded per query, and a time limit; the functions that can build more than
//! their arguments hold (`repeat`, `lpad`, `range`, …) are bounded per call, since the
//! pool does not see what they build. Errors that are the server's (reading its files)
//! are logged and not shown, so no server path reaches a client.

mod depth;
mod functions;
mod limits;
mod plugin_database;
mod plugin_rows;
mod points;
mod schema;
pub mod sizes;
mod system;
mod table;
pub mod wal_feed;
pub mod watch;

pub use datafusion::arrow::datatypes::SchemaRef;
pub use datafusion::arrow::record_batch::RecordBatch;
pub use datafusion::scalar::ScalarValue;
pub use depth::{MAX_QUERY_BYTES, MAX_QUERY_DEPTH, QUERY_THREAD_STACK_BYTES};
pub use limits::QueryLimits;
pub use plugin_database::PluginDatabase;
pub use plugin_rows::ResultBuilder;
pub use schema::{DatabaseSchema, Readable, SystemTablesOnly};
pub use system::{EngineViews, SYSTEM_SCHEMA, SystemSchema};
pub use table::SluiceTable;

use datafusion::catalog::CatalogProvider;
use datafusion::catalog::{MemoryCatalogProvider, SchemaProvider};
use datafusion::datasource::object_store::{DefaultObjectStoreRegistry, ObjectStoreUrl};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use futures::{FutureExt, StreamExt};
use limits::{QueryPool, Refusal};
use sluice_storage::WriteBuffer;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
    /// The query named a table it may not read ([`Readable::SystemTables`]).
    #[error("{0}")]
    Forbidden(String),
    /// The query is wrong: bad SQL, unknown table or column, missing parameter.
    #[error("{0}")]
    Plan(String),
    /// The query asks for something a query may not do: change data or the schema,
    /// copy to or read from files, change settings.
    #[error("{0} (a query may only read)")]
    NotAllowed(String),
    /// The query failed while running, on its own data (a failed cast, a division by
    /// zero).
    #[error("{0}")]
    Execution(String),
    /// The query needed more than its own bound: memory, time or, for a plugin, the
    /// size of its result. The message names the limit.
    #[error("{0}")]
    Limit(String),
    /// The server's query memory is taken by other queries; the same query may succeed
    /// later.
    #[error("{0}")]
    Busy(String),
    /// The server failed (reading its files); the cause is logged, not shown, since it
    /// names the server's paths.
    #[error("internal error while running the query; see the server log")]
    Internal,
}

impl QueryError {
    /// `error`, which ended a query that drew on `pool`, as its cause.
    fn classify(error: DataFusionError, pool: Option<&QueryPool>) -> Self {
        if let DataFusionError::External(inner) = error.find_root()
            && inner.downcast_ref::<watch::ShortOfMemory>().is_some()
        {
            return Self::Busy(inner.to_string());
        }
        if let DataFusionError::External(inner) = error.find_root()
            && let Some(refused) = inner.downcast_ref::<SystemTablesOnly>()
        {
            return Self::Forbidden(refused.to_string());
        }
        match error.find_root() {
            DataFusionError::ResourcesExhausted(message) => {
                // An operator may say it in its own words: the bound's words lead.
                let said = |bound: String| {
                    if message.contains(&bound) {
                        message.clone()
                    } else {
                        format!("{bound} ({message})")
                    }
                };
                match pool.and_then(QueryPool::refusal) {
                    Some((Refusal::Server, bound)) => Self::Busy(said(bound)),
                    Some((Refusal::Query, bound)) => Self::Limit(said(bound)),
                    None => Self::Limit(message.clone()),
                }
            }
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_) => Self::Plan(error.to_string()),
            DataFusionError::Execution(_) => Self::Execution(error.to_string()),
            DataFusionError::ArrowError(arrow, _)
                if !matches!(
                    **arrow,
                    datafusion::arrow::error::ArrowError::IoError(..)
                        | datafusion::arrow::error::ArrowError::ExternalError(_)
                ) =>
            {
                Self::Execution(error.to_string())
            }
            _ => {
                tracing::error!("a query failed: {error}");
                Self::Internal
            }
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(error: DataFusionError) -> Self {
        Self::classify(error, None)
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

/// A query's rows as they are produced, within the query's limits.
///
/// The query runs in a task of its own, which hands its batches over a channel of
/// [`BATCHES_AHEAD`] and is stopped when its time is up, whether or not the reader reads
/// (a client that stops reading holds nothing for longer), or when the stream is
/// dropped.
pub struct QueryStream {
    /// The result schema (also when there are no rows).
    pub schema: SchemaRef,
    batches: tokio::sync::mpsc::Receiver<Result<RecordBatch, DataFusionError>>,
    /// Set by the task when the query's time ran out.
    timed_out: Arc<AtomicBool>,
    timeout: std::time::Duration,
    _task: AbortOnDrop<()>,
    pool: Arc<QueryPool>,
    /// What the reader keeps of the rows, counted in the query's memory.
    held: MemoryReservation,
}

/// Batches a query produces before its reader takes them.
const BATCHES_AHEAD: usize = 2;

/// A task that stops when this is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    /// What the task returned, or `Err` with what it panicked with.
    async fn outcome(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl QueryStream {
    /// Runs `batches` in a task of its own until `deadline`.
    fn start(
        schema: SchemaRef,
        mut batches: SendableRecordBatchStream,
        deadline: tokio::time::Instant,
        timeout: std::time::Duration,
        pool: Arc<QueryPool>,
    ) -> Self {
        let (sender, receiver) = tokio::sync::mpsc::channel(BATCHES_AHEAD);
        let timed_out = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&timed_out);
        let task = tokio::spawn(async move {
            let produce = async {
                while let Some(item) = batches.next().await {
                    let failed = item.is_err();
                    if sender.send(item).await.is_err() || failed {
                        return;
                    }
                }
            };
            // A panic must end the stream with an error, not as if all rows were read.
            let produce = std::panic::AssertUnwindSafe(produce).catch_unwind();
            match tokio::time::timeout_at(deadline, produce).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    let panicked = DataFusionError::Internal("running the query panicked".into());
                    let _ = sender.send(Err(panicked)).await;
                }
                Err(_) => flag.store(true, Ordering::Release),
            }
        });
        let memory: Arc<dyn MemoryPool> = Arc::clone(&pool) as _;
        Self {
            schema,
            batches: receiver,
            timed_out,
            timeout,
            _task: AbortOnDrop(task),
            held: MemoryConsumer::new("rows held by the reader").register(&memory),
            pool,
        }
    }

    /// The next batch of rows; `None` at the end.
    ///
    /// # Errors
    ///
    /// See [`QueryError`]; after an error the stream has ended.
    pub async fn next(&mut self) -> Option<Result<RecordBatch, QueryError>> {
        match self.batches.recv().await {
            Some(item) => Some(item.map_err(|e| QueryError::classify(e, Some(&self.pool)))),
            None if self.timed_out.swap(false, Ordering::Acquire) => {
                Some(Err(QueryError::Limit(limits::timed_out(self.timeout))))
            }
            None => None,
        }
    }

    /// Counts `batch`, which the reader keeps until the stream is dropped, in the
    /// query's memory: its bound, and the server's pool.
    ///
    /// # Errors
    ///
    /// [`QueryError::Limit`] or [`QueryError::Busy`] when the memory is not there.
    pub fn hold(&mut self, batch: &RecordBatch) -> Result<(), QueryError> {
        self.held
            .try_grow(batch.get_array_memory_size())
            .map_err(|e| QueryError::classify(e, Some(&self.pool)))
    }
}

/// Runs SQL against the storage's tables.
#[derive(Clone)]
pub struct QueryEngine {
    storage: Arc<WriteBuffer>,
    engine: EngineViews,
    plugin_dir: Option<Arc<sluice_engine::plugin_dir::PluginAreas>>,
    limits: QueryLimits,
    /// The memory every query of this engine draws on.
    server_pool: Arc<dyn MemoryPool>,
    /// The process's memory, which every query's sources check.
    watch: watch::Watch,
}

/// The database that holds only server-wide system tables (`system.plugin_files` of
/// every trigger), as upstream's `_internal`. Its name is not a valid database name, so
/// nothing can be written to it.
pub const INTERNAL_DATABASE: &str = "_internal";

impl QueryEngine {
    /// An engine over `storage`.
    pub fn new(storage: Arc<WriteBuffer>) -> Self {
        Self::with_limits(storage, QueryLimits::default())
    }

    /// An engine over `storage` whose queries run within `limits`.
    pub fn with_limits(storage: Arc<WriteBuffer>, limits: QueryLimits) -> Self {
        Self {
            storage,
            engine: EngineViews::default(),
            plugin_dir: None,
            server_pool: limits::server_pool(&limits),
            watch: watch::Watch::new(limits.process_memory_bytes),
            limits,
        }
    }

    /// The bounds of this engine's queries.
    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// The same engine, listing plugin files from `plugin_dir` in `system.plugin_files`.
    pub fn with_plugin_dir(
        mut self,
        plugin_dir: Arc<sluice_engine::plugin_dir::PluginAreas>,
    ) -> Self {
        self.plugin_dir = Some(plugin_dir);
        self
    }

    /// The same engine, showing the processing `engine`'s state in the system tables:
    /// its records, what the plugins' caches hold, where its WAL triggers are.
    pub fn with_engine(mut self, engine: &sluice_engine::ProcessingEngine) -> Self {
        self.engine = EngineViews {
            records: Arc::clone(&engine.records),
            cache: Some(Arc::clone(engine.invoker.cache())),
            triggers: Some(Arc::clone(&engine.triggers)),
        };
        self
    }

    /// A session whose default schema is `database`'s tables (those `readable`), drawing
    /// memory from `pool`.
    fn session(
        &self,
        database: &str,
        readable: Readable,
        pool: Arc<QueryPool>,
    ) -> Result<SessionContext, QueryError> {
        if database != INTERNAL_DATABASE && !self.storage.catalog().has_database(database) {
            return Err(QueryError::DatabaseNotFound(database.to_string()));
        }
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(DEFAULT_CATALOG, DEFAULT_SCHEMA);
        let store_url = ObjectStoreUrl::parse(STORE_URL)?;
        // Only the database's own store: DataFusion's default registry also serves
        // `file://`, the host's whole file system.
        let stores = DefaultObjectStoreRegistry::new();
        let _local = stores.deregister_store(ObjectStoreUrl::local_filesystem().as_ref());
        stores.register_store(
            store_url.as_ref(),
            Arc::clone(self.storage.snapshots().store()),
        );
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(stores))
            .with_memory_pool(pool)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()?;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(watch::WatchLeaves(self.watch)))
            .build();
        let context = SessionContext::new_with_state(state);
        functions::bound(&context);
        let catalog = MemoryCatalogProvider::new();
        let tables: Arc<dyn SchemaProvider> = match readable {
            Readable::All => Arc::new(DatabaseSchema::new(
                database,
                Arc::clone(&self.storage),
                store_url,
            )),
            Readable::SystemTables => Arc::new(schema::HiddenTables::new(database)),
        };
        catalog.register_schema(DEFAULT_SCHEMA, tables)?;
        catalog.register_schema(
            SYSTEM_SCHEMA,
            Arc::new(SystemSchema::new(
                Arc::clone(&self.storage),
                self.engine.clone(),
                self.plugin_dir.clone(),
                database,
            )),
        )?;
        context.register_catalog(DEFAULT_CATALOG, Arc::new(catalog));
        Ok(context)
    }

    /// Runs `sql` on `database` with `$name` parameters, and collects its rows.
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
        let mut stream = self.stream(database, Readable::All, sql, params).await?;
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            batches.push(batch?);
        }
        Ok(QueryOutput {
            schema: stream.schema,
            batches,
        })
    }

    /// Plans `sql` on `database` (reading the tables `readable`) with `$name` parameters
    /// and starts it; its rows come as the stream is read, within [`QueryLimits`] (the
    /// time limit runs from now).
    ///
    /// # Errors
    ///
    /// See [`QueryError`]. Errors while running come from [`QueryStream::next`].
    pub async fn stream(
        &self,
        database: &str,
        readable: Readable,
        sql: &str,
        params: Vec<(String, ScalarValue)>,
    ) -> Result<QueryStream, QueryError> {
        depth::check(sql).map_err(|refused| QueryError::Limit(refused.to_string()))?;
        let timeout = self.limits.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let pool = Arc::new(QueryPool::new(
            Arc::clone(&self.server_pool),
            self.limits.query_memory_bytes,
        ));
        let context = self.session(database, readable, Arc::clone(&pool))?;
        // Planned on a query thread (a plugin's call runs on a small stack of its own),
        // where a panic fails this query only.
        let sql = sql.to_owned();
        let planning = AbortOnDrop(tokio::spawn(async move {
            let planned = tokio::time::timeout_at(deadline, start(&context, &sql, params, &pool))
                .await
                .map_err(|_| QueryError::Limit(limits::timed_out(timeout)))?;
            let (schema, batches) = planned?;
            Ok(QueryStream::start(schema, batches, deadline, timeout, pool))
        }));
        planning.outcome().await.unwrap_or_else(|panicked| {
            tracing::error!("planning a query panicked: {panicked}");
            Err(QueryError::Internal)
        })
    }
}

/// Plans `sql` with `params` in `context` and starts running it.
async fn start(
    context: &SessionContext,
    sql: &str,
    params: Vec<(String, ScalarValue)>,
    pool: &QueryPool,
) -> Result<(SchemaRef, SendableRecordBatchStream), QueryError> {
    let frame = plan(context, sql, params).await?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let state = context.state();
    let started = async {
        let optimized = state.optimize(frame.logical_plan())?;
        check_literals(&optimized)?;
        let physical = state
            .query_planner()
            .create_physical_plan(&optimized, &state)
            .await?;
        datafusion::physical_plan::execute_stream(physical, context.task_ctx())
    };
    let batches = started
        .await
        .map_err(|e| QueryError::classify(e, Some(pool)))?;
    Ok((schema, batches))
}

/// The largest value written into a query, and all of its values together: a value
/// projected as a column is copied to every row of every batch, which no pool sees.
const MAX_LITERAL_BYTES: usize = 64 << 10;
/// See [`MAX_LITERAL_BYTES`].
const MAX_LITERALS_BYTES: usize = 1 << 20;

/// Refuses a plan with a value over [`MAX_LITERAL_BYTES`], or values over
/// [`MAX_LITERALS_BYTES`] in all (after constant folding: `repeat('x', 1000000)` is such a
/// value).
fn check_literals(plan: &datafusion::logical_expr::LogicalPlan) -> Result<(), DataFusionError> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let mut total = 0_usize;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|inner| {
                if let Expr::Literal(value, _) = inner {
                    let size = value.size();
                    total = total.saturating_add(size);
                    if size > MAX_LITERAL_BYTES || total > MAX_LITERALS_BYTES {
                        return Err(DataFusionError::ResourcesExhausted(format!(
                            "the query holds a value of {size} bytes ({total} in all); a \
                             query may hold values of at most {} KiB, {} KiB in all",
                            MAX_LITERAL_BYTES >> 10,
                            MAX_LITERALS_BYTES >> 10
                        )));
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(())
}

/// The plan of `sql` with `params` in place, if it only reads.
async fn plan(
    context: &SessionContext,
    sql: &str,
    params: Vec<(String, ScalarValue)>,
) -> Result<datafusion::dataframe::DataFrame, QueryError> {
    let plan = context.state().create_logical_plan(sql).await?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|refused| match refused.find_root() {
            DataFusionError::Plan(what) => QueryError::NotAllowed(what.clone()),
            _ => QueryError::from(refused),
        })?;
    let mut frame = context.execute_logical_plan(plan).await?;
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
    Ok(frame)
}

#[cfg(test)]
mod tests;
