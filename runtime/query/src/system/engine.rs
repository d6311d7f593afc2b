//! `system.processing_engine_logs`, `system.processing_engine_invocations`,
//! `system.processing_engine_usage` and `system.processing_engine_cache`: the recent log
//! lines and invocations of the database's triggers, what they used, and what their
//! caches hold.

use super::SystemTable;
use datafusion::arrow::array::{
    ArrayRef, Float64Array, StringArray, TimestampNanosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use sluice_engine::records::EngineRecords;
use std::sync::Arc;

fn time_field(name: &str) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Nanosecond, None), false)
}

/// What `read` gives for the database named `database`; nothing when there is none.
fn of_database<T>(
    catalog: &sluice_catalog::Catalog,
    database: &str,
    read: impl FnOnce(sluice_catalog::DbId) -> Vec<T>,
) -> Vec<T> {
    catalog.database_id(database).map(read).unwrap_or_default()
}

/// Nanoseconds as milliseconds, as the tables show times taken.
fn millis(nanoseconds: impl Iterator<Item = impl Into<i128>>) -> ArrayRef {
    Arc::new(
        nanoseconds
            .map(|ns| ns.into() as f64 / 1e6)
            .collect::<Float64Array>(),
    )
}

fn utf8<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

/// Plugin log lines, oldest first, with upstream's columns.
pub struct Logs(pub Arc<EngineRecords>);

impl SystemTable for Logs {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            time_field("event_time"),
            Field::new("trigger_name", DataType::Utf8, false),
            Field::new("log_level", DataType::Utf8, false),
            Field::new("log_text", DataType::Utf8, false),
        ]))
    }

    fn rows(&self, catalog: &sluice_catalog::Catalog, database: &str) -> Result<RecordBatch> {
        let logs = of_database(catalog, database, |id| self.0.logs(id));
        let columns = vec![
            Arc::new(TimestampNanosecondArray::from_iter_values(
                logs.iter().map(|r| r.time_ns),
            )) as ArrayRef,
            utf8(logs.iter().map(|r| r.trigger.as_str())),
            utf8(logs.iter().map(|r| r.level)),
            utf8(logs.iter().map(|r| r.text.as_str())),
        ];
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}

/// One row per invocation: what each plugin call cost and how it ended.
pub struct Invocations(pub Arc<EngineRecords>);

impl SystemTable for Invocations {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("trigger_name", DataType::Utf8, false),
            time_field("start_time"),
            Field::new("duration_ms", DataType::Float64, false),
            Field::new("peak_memory_bytes", DataType::UInt64, false),
            Field::new("bytes_written", DataType::UInt64, false),
            Field::new("cpu_time_ms", DataType::Float64, false),
            Field::new("query_rows", DataType::UInt64, false),
            Field::new("http_requests", DataType::UInt64, false),
            Field::new("http_response_bytes", DataType::UInt64, false),
            Field::new("tmp_bytes", DataType::UInt64, false),
            Field::new("outcome", DataType::Utf8, false),
            Field::new("error", DataType::Utf8, true),
        ]))
    }

    fn rows(&self, catalog: &sluice_catalog::Catalog, database: &str) -> Result<RecordBatch> {
        let calls = of_database(catalog, database, |id| self.0.invocations(id));
        let columns = vec![
            utf8(calls.iter().map(|r| r.trigger.as_str())),
            Arc::new(TimestampNanosecondArray::from_iter_values(
                calls.iter().map(|r| r.start_ns),
            )) as ArrayRef,
            millis(calls.iter().map(|r| r.duration_ns)),
            Arc::new(
                calls
                    .iter()
                    .map(|r| r.peak_memory_bytes)
                    .collect::<UInt64Array>(),
            ),
            Arc::new(
                calls
                    .iter()
                    .map(|r| r.bytes_written)
                    .collect::<UInt64Array>(),
            ),
            millis(calls.iter().map(|r| r.cpu_ns)),
            Arc::new(calls.iter().map(|r| r.query_rows).collect::<UInt64Array>()),
            Arc::new(
                calls
                    .iter()
                    .map(|r| r.http_requests)
                    .collect::<UInt64Array>(),
            ),
            Arc::new(
                calls
                    .iter()
                    .map(|r| r.http_response_bytes)
                    .collect::<UInt64Array>(),
            ),
            Arc::new(calls.iter().map(|r| r.tmp_bytes).collect::<UInt64Array>()),
            utf8(calls.iter().map(|r| r.outcome.as_str())),
            Arc::new(
                calls
                    .iter()
                    .map(|r| r.error.as_deref())
                    .collect::<StringArray>(),
            ),
        ];
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}

/// What each trigger used: since the server started (`hour` null), and hour by hour
/// for the last week.
pub struct Usage(pub Arc<EngineRecords>);

impl SystemTable for Usage {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            // Null for the database's triggers deleted since the server started.
            Field::new("trigger_name", DataType::Utf8, true),
            Field::new(
                "hour",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                true,
            ),
            Field::new("invocations", DataType::UInt64, false),
            Field::new("errors", DataType::UInt64, false),
            Field::new("wall_time_ms", DataType::Float64, false),
            Field::new("peak_memory_bytes", DataType::UInt64, false),
            Field::new("bytes_written", DataType::UInt64, false),
            Field::new("cpu_time_ms", DataType::Float64, false),
            Field::new("query_rows", DataType::UInt64, false),
            Field::new("http_requests", DataType::UInt64, false),
            Field::new("http_response_bytes", DataType::UInt64, false),
            Field::new("tmp_bytes", DataType::UInt64, false),
            Field::new("wal_read_cpu_time_ms", DataType::Float64, false),
        ]))
    }

    fn rows(&self, catalog: &sluice_catalog::Catalog, database: &str) -> Result<RecordBatch> {
        let rows = of_database(catalog, database, |id| self.0.usage(id));
        let count = |of: fn(&sluice_engine::records::Usage) -> u64| -> ArrayRef {
            Arc::new(rows.iter().map(|r| of(&r.usage)).collect::<UInt64Array>())
        };
        let columns = vec![
            Arc::new(
                rows.iter()
                    .map(|r| r.trigger.as_deref())
                    .collect::<StringArray>(),
            ) as ArrayRef,
            Arc::new(
                rows.iter()
                    .map(|r| r.hour_ns)
                    .collect::<TimestampNanosecondArray>(),
            ) as ArrayRef,
            count(|u| u.invocations),
            count(|u| u.errors),
            millis(rows.iter().map(|r| r.usage.wall_ns)),
            count(|u| u.peak_memory_bytes),
            count(|u| u.bytes_written),
            millis(rows.iter().map(|r| r.usage.cpu_ns)),
            count(|u| u.query_rows),
            count(|u| u.http_requests),
            count(|u| u.http_response_bytes),
            count(|u| u.tmp_bytes),
            millis(rows.iter().map(|r| r.usage.wal_read_ns)),
        ];
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}

/// What the database's caches (its triggers' and its shared one) hold now: one row.
pub struct Cache(pub Option<Arc<sluice_engine::cache::CacheStore>>);

impl SystemTable for Cache {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new(
            "cache_bytes",
            DataType::UInt64,
            false,
        )]))
    }

    fn rows(&self, catalog: &sluice_catalog::Catalog, database: &str) -> Result<RecordBatch> {
        let held = match (&self.0, catalog.database_id(database)) {
            (Some(cache), Some(id)) => cache.held_by(id),
            _ => 0,
        };
        let columns = vec![Arc::new(UInt64Array::from(vec![held])) as ArrayRef];
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}
