//! `system.plugin_files`: the files of each trigger's plugin, with upstream's columns.
//! In a database it lists that database's triggers; in `_internal`, every trigger of the
//! server (as upstream, where the table exists only there).

use super::SystemTable;
use crate::INTERNAL_DATABASE;
use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use sluice_catalog::Catalog;
use sluice_engine::plugin_dir::PluginAreas;
use std::sync::Arc;

/// One row per file of each trigger's plugin; `file_path` is relative to the plugin
/// directory or the database's area (upstream's is absolute: the server's layout is not
/// shown to tenants).
pub struct PluginFiles(pub Option<Arc<PluginAreas>>);

impl SystemTable for PluginFiles {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("plugin_name", DataType::Utf8, false),
            Field::new("file_name", DataType::Utf8, false),
            Field::new("file_path", DataType::Utf8, false),
            Field::new("size_bytes", DataType::Int64, false),
            Field::new("last_modified", DataType::Int64, false),
        ]))
    }

    fn rows(&self, catalog: &Catalog, database: &str) -> Result<RecordBatch> {
        let databases = if database == INTERNAL_DATABASE {
            catalog.database_names()
        } else {
            vec![database.to_string()]
        };
        let mut rows = Vec::new();
        if let Some(areas) = &self.0 {
            for db in &databases {
                let Some(id) = catalog.database_id(db) else {
                    continue;
                };
                for trigger in catalog.triggers(db).unwrap_or_default() {
                    let files = areas.files(trigger.plugin_area, id, &trigger.plugin_filename);
                    for file in files {
                        rows.push((trigger.trigger_name.clone(), file));
                    }
                }
            }
        }
        let text = |f: fn(&(String, sluice_engine::plugin_dir::PluginFile)) -> &str| {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f))) as ArrayRef
        };
        let columns = vec![
            text(|(trigger, _)| trigger),
            text(|(_, file)| &file.file_name),
            text(|(_, file)| &file.file_path),
            Arc::new(Int64Array::from_iter_values(
                rows.iter()
                    .map(|(_, f)| i64::try_from(f.size_bytes).unwrap_or(i64::MAX)),
            )) as ArrayRef,
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|(_, f)| f.last_modified_ms),
            )) as ArrayRef,
        ];
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}
