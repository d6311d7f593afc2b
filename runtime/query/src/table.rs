//! One table as DataFusion sees it: the buffer's rows and the Parquet files, unioned.

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use sluice_storage::TableData;
use std::sync::Arc;

/// A table's rows at the moment a query asked for it.
#[derive(Debug)]
pub struct SluiceTable {
    data: TableData,
    store_url: ObjectStoreUrl,
}

impl SluiceTable {
    /// The table over `data`, whose files are on the store registered as `store_url`.
    pub fn new(data: TableData, store_url: ObjectStoreUrl) -> Self {
        Self { data, store_url }
    }

    fn parquet_scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = Arc::clone(&self.data.schema);
        let mut source = ParquetSource::new(Arc::clone(&schema));
        // Row groups whose statistics rule the filters out are skipped.
        if let Some(filter) = conjunction(filters.to_vec()) {
            let predicate = state
                .create_physical_expr(filter, &DFSchema::try_from(schema.as_ref().clone())?)?;
            source = source.with_predicate(predicate);
        }
        let partitions = state.config().target_partitions().max(1);
        let count = partitions.min(self.data.files.len());
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); count];
        for (index, file) in self.data.files.iter().enumerate() {
            let meta = file.object_meta().map_err(DataFusionError::Internal)?;
            groups[index % count].push(PartitionedFile::from(meta));
        }
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(projection.cloned())?
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

#[async_trait]
impl TableProvider for SluiceTable {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        Arc::clone(&self.data.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Used to prune Parquet row groups; the filter itself still runs above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !self.data.batches.is_empty() {
            // The chunks cut to the session's batch size (slices, not copies): what the
            // operators above build per batch, a projected value copied to every row
            // among them, grows with the batch. Dealt over the partitions, so they are
            // scanned in parallel.
            let rows = state.config().batch_size().max(1);
            let pieces: Vec<RecordBatch> = self
                .data
                .batches
                .iter()
                .flat_map(|batch| {
                    (0..batch.num_rows())
                        .step_by(rows)
                        .map(move |at| batch.slice(at, rows.min(batch.num_rows() - at)))
                })
                .collect();
            let count = state
                .config()
                .target_partitions()
                .clamp(1, pieces.len().max(1));
            let mut partitions = vec![Vec::new(); count];
            for (index, batch) in pieces.into_iter().enumerate() {
                partitions[index % count].push(batch);
            }
            inputs.push(MemorySourceConfig::try_new_exec(
                &partitions,
                Arc::clone(&self.data.schema),
                projection.cloned(),
            )?);
        }
        if !self.data.files.is_empty() {
            inputs.push(self.parquet_scan(state, projection, filters)?);
        }
        if inputs.is_empty() {
            let projected = match projection {
                Some(indices) => Arc::new(self.data.schema.project(indices)?),
                None => Arc::clone(&self.data.schema),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(inputs)
    }
}
