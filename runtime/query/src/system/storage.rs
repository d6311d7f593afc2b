//! `system.storage_problems`: what start-up found wrong with the stored data (damaged
//! WAL or Parquet files, a catalog version lost, files nothing refers to). In a
//! database it lists that database's problems; in `_internal`, every problem of the
//! server, those of no database included.

use super::SystemTable;
use crate::INTERNAL_DATABASE;
use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use sluice_catalog::Catalog;
use sluice_storage::{StorageProblem, WriteBuffer};
use std::sync::Arc;

/// One row per problem, as [`WriteBuffer::problems`] holds them.
pub struct StorageProblems(pub Arc<WriteBuffer>);

impl SystemTable for StorageProblems {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("kind", DataType::Utf8, false),
            Field::new("database_name", DataType::Utf8, true),
            Field::new("table_name", DataType::Utf8, true),
            Field::new("object", DataType::Utf8, false),
            Field::new("detail", DataType::Utf8, false),
        ]))
    }

    fn rows(&self, _: &Catalog, database: &str) -> Result<RecordBatch> {
        let problems: Vec<StorageProblem> = self
            .0
            .problems()
            .into_iter()
            .filter(|p| database == INTERNAL_DATABASE || p.database.as_deref() == Some(database))
            .collect();
        let text = |f: fn(&StorageProblem) -> Option<&str>| {
            Arc::new(StringArray::from_iter(problems.iter().map(f))) as ArrayRef
        };
        let columns = vec![
            text(|p| Some(p.kind.as_str())),
            text(|p| p.database.as_deref()),
            text(|p| p.table.as_deref()),
            text(|p| Some(&p.object)),
            text(|p| Some(&p.detail)),
        ];
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}
