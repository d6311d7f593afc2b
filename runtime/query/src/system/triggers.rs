//! `system.processing_engine_triggers` and `system.processing_engine_trigger_arguments`:
//! the database's triggers and their arguments, with upstream's columns (and what each
//! trigger's plugin may reach besides its database, whether it is public, and its own
//! limits); `system.processing_engine_wal_triggers`: where each running WAL trigger is in
//! the WAL.

use super::SystemTable;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use sluice_catalog::Catalog;
use sluice_engine::manager::TriggerManager;
use std::sync::Arc;

fn utf8(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

/// One row per trigger.
pub struct Triggers;

impl SystemTable for Triggers {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("trigger_name", DataType::Utf8, false),
            Field::new("plugin_filename", DataType::Utf8, false),
            Field::new("trigger_specification", DataType::Utf8, false),
            Field::new("disabled", DataType::Boolean, false),
            Field::new("error_behavior", DataType::Utf8, false),
            // Comma-separated; empty when none were named (`--grant-database`).
            Field::new("granted_databases", DataType::Utf8, false),
            // Comma-separated; empty when the plugin may send no HTTP request.
            Field::new("allowed_hosts", DataType::Utf8, false),
            // What its creator could: `all databases`, `db:a:read,write …`, or (triggers
            // from before creators were recorded) `granted databases`.
            Field::new("reach", DataType::Utf8, false),
            // A request trigger anyone may call.
            Field::new("public", DataType::Boolean, false),
            // `name=value,…` of the limits that differ from the server's.
            Field::new("limit_overrides", DataType::Utf8, false),
            // Invocations that may run at once (a `run_async` trigger's); null: its
            // database's quota.
            Field::new("max_concurrency", DataType::UInt64, true),
            // What runs its plugin: `wasm` (the sandbox) or `pyo3`.
            Field::new("runtime", DataType::Utf8, false),
        ]))
    }

    fn rows(&self, catalog: &Catalog, database: &str) -> Result<RecordBatch> {
        let triggers = catalog.triggers(database).unwrap_or_default();
        // Upstream shows the specification as its JSON, e.g. `"all_tables_wal_write"`.
        let specifications = triggers
            .iter()
            .map(|t| {
                serde_json::to_string(&t.trigger)
                    .map_err(|e| DataFusionError::External(Box::new(e)))
            })
            .collect::<Result<Vec<_>>>()?;
        let columns = vec![
            utf8(triggers.iter().map(|t| t.trigger_name.clone()).collect()),
            utf8(triggers.iter().map(|t| t.plugin_filename.clone()).collect()),
            utf8(specifications),
            Arc::new(BooleanArray::from(
                triggers.iter().map(|t| t.disabled).collect::<Vec<_>>(),
            )) as ArrayRef,
            utf8(
                triggers
                    .iter()
                    .map(|t| t.trigger_settings.error_behavior.as_str().to_string())
                    .collect(),
            ),
            utf8(
                triggers
                    .iter()
                    .map(|t| t.granted_databases.join(","))
                    .collect(),
            ),
            utf8(
                triggers
                    .iter()
                    .map(|t| {
                        let hosts: Vec<String> =
                            t.allowed_hosts.iter().map(ToString::to_string).collect();
                        hosts.join(",")
                    })
                    .collect(),
            ),
            utf8(triggers.iter().map(|t| t.reach.describe()).collect()),
            Arc::new(BooleanArray::from(
                triggers.iter().map(|t| t.public).collect::<Vec<_>>(),
            )) as ArrayRef,
            utf8(triggers.iter().map(|t| t.limits.describe()).collect()),
            Arc::new(
                triggers
                    .iter()
                    .map(|t| t.trigger_settings.max_concurrency)
                    .collect::<UInt64Array>(),
            ) as ArrayRef,
            utf8(triggers.iter().map(|t| t.runtime.to_string()).collect()),
        ];
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}

/// One row per argument of each trigger.
pub struct TriggerArguments;

impl SystemTable for TriggerArguments {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("trigger_name", DataType::Utf8, false),
            Field::new("argument_key", DataType::Utf8, false),
            Field::new("argument_value", DataType::Utf8, false),
        ]))
    }

    fn rows(&self, catalog: &Catalog, database: &str) -> Result<RecordBatch> {
        let (mut names, mut keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for trigger in catalog.triggers(database).unwrap_or_default() {
            for (key, value) in trigger.trigger_arguments.iter().flatten() {
                names.push(trigger.trigger_name.clone());
                keys.push(key.clone());
                values.push(value.clone());
            }
        }
        Ok(RecordBatch::try_new(
            self.schema(),
            vec![utf8(names), utf8(keys), utf8(values)],
        )?)
    }
}

/// One row per running WAL trigger: its cursor, the WAL's head, and how far behind it is.
pub struct WalTriggers(pub Option<Arc<TriggerManager>>);

impl SystemTable for WalTriggers {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("trigger_name", DataType::Utf8, false),
            // The WAL sequence of the last flush its plugin has finished with.
            Field::new("wal_cursor", DataType::UInt64, false),
            // The WAL sequence of the newest flush.
            Field::new("wal_head", DataType::UInt64, false),
            Field::new("lag_flushes", DataType::UInt64, false),
            // Null when not known: behind flushes from before the server started.
            Field::new("lag_rows", DataType::UInt64, true),
            Field::new("lag_seconds", DataType::Float64, true),
        ]))
    }

    fn rows(&self, catalog: &Catalog, database: &str) -> Result<RecordBatch> {
        let positions = match (&self.0, catalog.database_id(database)) {
            (Some(triggers), Some(id)) => triggers.wal_positions(Some(id)),
            _ => Vec::new(),
        };
        let numbers = |value: fn(&sluice_engine::lag::WalPosition) -> u64| {
            Arc::new(positions.iter().map(value).collect::<UInt64Array>()) as ArrayRef
        };
        let columns = vec![
            utf8(positions.iter().map(|p| p.trigger.clone()).collect()),
            numbers(|p| p.cursor),
            numbers(|p| p.head),
            numbers(|p| p.lag.flushes),
            Arc::new(
                positions
                    .iter()
                    .map(|p| p.lag.rows)
                    .collect::<UInt64Array>(),
            ) as ArrayRef,
            Arc::new(
                positions
                    .iter()
                    .map(|p| p.lag.seconds)
                    .collect::<Float64Array>(),
            ) as ArrayRef,
        ];
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}
