//! The database as plugins reach it: the engine's [`Database`] on this server's storage
//! and SQL engine.

use crate::{QueryEngine, ResultBuilder, ScalarValue};
use sluice_engine::host::Database;
use sluice_lp::ParsedBody;
use sluice_plugin_api::{BoxFuture, QueryResult};
use sluice_storage::{WriteBuffer, WriteError, WriteRequest};
use std::sync::Arc;

/// Queries and writes of plugins, on the server's own storage.
pub struct PluginDatabase {
    /// Where plugin writes go.
    pub storage: Arc<WriteBuffer>,
    /// What plugin queries run on.
    pub query: QueryEngine,
}

impl Database for PluginDatabase {
    fn database_id(&self, name: &str) -> Option<sluice_catalog::DbId> {
        self.storage.catalog().database_id(name)
    }

    fn query<'a>(
        &'a self,
        database: &'a str,
        sql: &'a str,
        params: &'a [(String, String)],
        max_result_bytes: u64,
    ) -> BoxFuture<'a, Result<QueryResult, String>> {
        Box::pin(async move {
            // Plugin parameters are strings, as upstream's `dict[str, str]`.
            let params = params
                .iter()
                .map(|(k, v)| (k.clone(), ScalarValue::Utf8(Some(v.clone()))))
                .collect();
            let mut stream = self
                .query
                .stream(database, crate::Readable::All, sql, params)
                .await
                .map_err(|e| e.to_string())?;
            // Built as the rows come, so a result over its bound stops the query there.
            let mut result = ResultBuilder::new(&stream.schema, max_result_bytes)?;
            while let Some(batch) = stream.next().await {
                result.push(&batch.map_err(|e| e.to_string())?)?;
            }
            Ok(result.finish())
        })
    }

    fn write<'a>(
        &'a self,
        database: &'a str,
        line_protocol: String,
        no_sync: bool,
        create_database: bool,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let request = plugin_write(database, &line_protocol, no_sync, create_database);
            self.storage
                .write_lp(request)
                .await
                .map(drop)
                .map_err(|e| write_error(database, e))
        })
    }

    fn write_parsed<'a>(
        &'a self,
        database: &'a str,
        line_protocol: String,
        parsed: ParsedBody,
        create_database: bool,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let request = plugin_write(database, &line_protocol, false, create_database);
            self.storage
                .write_parsed(request, parsed)
                .await
                .map(drop)
                .map_err(|e| write_error(database, e))
        })
    }
}

/// A plugin's write: all of it or nothing, nanosecond timestamps.
fn plugin_write<'a>(
    database: &'a str,
    body: &'a str,
    no_sync: bool,
    create_database: bool,
) -> WriteRequest<'a> {
    WriteRequest {
        database,
        body,
        precision: sluice_lp::Precision::Nanosecond,
        accept_partial: false,
        no_sync,
        default_time_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        create_database,
    }
}

/// A failed write as the plugin reads it.
fn write_error(database: &str, error: WriteError) -> String {
    match error {
        WriteError::Rejected(errors) | WriteError::Empty(errors) => {
            let details: Vec<String> = errors
                .iter()
                .map(|e| format!("line {}: {}", e.line_number, e.error_message))
                .collect();
            format!(
                "line protocol parse error on write to db {database}: {}",
                details.join("; ")
            )
        }
        WriteError::Durability(cause) => {
            // Its cause names the server's files: for the log, not for the plugin.
            tracing::error!("a plugin's write to {database} failed: {cause}");
            format!("the write to {database} could not be made durable; see the server log")
        }
        other => other.to_string(),
    }
}
