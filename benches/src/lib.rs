//! Shared fixtures for the benchmarks: plugins, inputs and a host that does nothing.
//!
//! Run them with `cargo bench -p sluice-benches`; `BENCHMARKS.md` records the results.

use sluice_plugin_api::{
    BoxFuture, CallUsage, Column, ColumnValues, HostServices, LogLevel, PluginRef, QueryResult,
    TableBatch,
};
use std::time::Duration;

/// A host that accepts every call and keeps nothing, so that benchmarks measure the
/// executor rather than the host.
pub struct NullHost;

impl HostServices for NullHost {
    fn log(&self, _: LogLevel, _: &str) {}
    fn query<'a>(
        &'a self,
        _: &'a str,
        _: &'a [(String, String)],
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<QueryResult, String>> {
        Box::pin(async { Ok(QueryResult::default()) })
    }
    fn write(&self, _: Option<&str>, _: String) -> Result<(), String> {
        Ok(())
    }
    fn write_sync<'a>(
        &'a self,
        _: Option<&'a str>,
        _: String,
        _: bool,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn cache_get(&self, _: &str, _: bool) -> Option<Vec<u8>> {
        None
    }
    fn cache_put(&self, _: &str, _: Vec<u8>, _: Option<Duration>, _: bool) -> Result<(), String> {
        Ok(())
    }
    fn cache_delete(&self, _: &str, _: bool) -> bool {
        false
    }
    fn finish(&self, _: bool, _: CallUsage) {}
}

/// A plugin that does nothing, on a schedule or a request.
pub const TRIVIAL: &str = "\
def process_scheduled_call(influxdb3_local, call_time, args=None):
    pass

def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    return 'ok'
";

/// A directory holding the benchmark plugins; removed on drop.
pub struct Plugins {
    dir: tempfile::TempDir,
}

impl Plugins {
    /// Writes the plugins.
    pub fn new() -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("trivial.py"), TRIVIAL)?;
        std::fs::write(
            dir.path().join("tmp_file.py"),
            "def process_scheduled_call(influxdb3_local, call_time, args=None):\n    \
             with open('/tmp/scratch', 'wb') as f:\n        f.write(b'x' * 4096)\n",
        )?;
        std::fs::write(
            dir.path().join("count_rows.py"),
            "def process_writes(influxdb3_local, table_batches, args=None):\n    \
             rows = sum(len(batch['rows']) for batch in table_batches)\n    \
             influxdb3_local.info(rows)\n",
        )?;
        Ok(Self { dir })
    }

    /// Writes plugin `name` with `code` (replacing it) and returns a reference to it.
    pub fn write(&self, name: &str, code: &str) -> std::io::Result<PluginRef> {
        std::fs::write(self.dir.path().join(name), code)?;
        Ok(self.get(name))
    }

    /// A reference to plugin `name`.
    pub fn get(&self, name: &str) -> PluginRef {
        PluginRef::new(self.dir.path().to_path_buf(), name.to_string())
    }
}

/// `rows` rows of one table with 3 tags, 3 fields (float, int, string) and time.
pub fn wal_batch(rows: usize) -> TableBatch {
    let tag = |prefix: &str, distinct: usize| {
        ColumnValues::Tag(
            (0..rows)
                .map(|i| format!("{prefix}{}", i % distinct))
                .collect(),
        )
    };
    TableBatch {
        table_name: "cpu".into(),
        row_count: u32::try_from(rows).unwrap_or(u32::MAX),
        columns: vec![
            Column::dense("host", tag("host", 100)),
            Column::dense("region", tag("region", 5)),
            Column::dense("cpu", tag("cpu", 8)),
            Column::dense(
                "usage",
                ColumnValues::Float((0..rows).map(|i| i as f64 * 0.5).collect()),
            ),
            Column::dense(
                "count",
                ColumnValues::Int((0..rows).map(|i| i as i64).collect()),
            ),
            Column::dense(
                "state",
                ColumnValues::String(
                    (0..rows)
                        .map(|i| {
                            if i % 2 == 0 {
                                "ok".into()
                            } else {
                                "busy".into()
                            }
                        })
                        .collect(),
                ),
            ),
            Column::dense(
                "time",
                ColumnValues::Time(
                    (0..rows)
                        .map(|i| 1_700_000_000_000_000_000 + i as i64)
                        .collect(),
                ),
            ),
        ],
    }
}
