//! One table as DataFusion sees it: the buffer's rows and the Parquet files, unioned.

use crate::points::{MergedPointsExec, merge_groups};
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
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::union::UnionExec;
use sluice_storage::{ParquetFile, PointSpan, TableData, is_point_key};
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

    /// A scan of `files`, spread over the session's partitions; `filters` prune row
    /// groups by their statistics.
    fn parquet_scan(
        &self,
        state: &dyn Session,
        files: &[&ParquetFile],
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        partitions: usize,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = Arc::clone(&self.data.schema);
        let mut source = ParquetSource::new(Arc::clone(&schema));
        if let Some(filter) = conjunction(filters.to_vec()) {
            let predicate = state
                .create_physical_expr(filter, &DFSchema::try_from(schema.as_ref().clone())?)?;
            source = source.with_predicate(predicate);
        }
        let count = partitions.clamp(1, files.len().max(1));
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); count];
        for (index, file) in files.iter().enumerate() {
            let meta = file.object_meta().map_err(DataFusionError::Internal)?;
            groups[index % count].push(PartitionedFile::from(meta));
        }
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(projection.cloned())?
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    /// The rows in memory, cut to the session's batch size (slices, not copies: what
    /// the operators above build per batch, a projected value copied to every row
    /// among them, grows with the batch) and dealt over `partitions`, so they are
    /// scanned in parallel.
    fn buffer_scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        partitions: usize,
    ) -> Result<Arc<dyn ExecutionPlan>> {
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
        let count = partitions.clamp(1, pieces.len().max(1));
        let mut dealt = vec![Vec::new(); count];
        for (index, batch) in pieces.into_iter().enumerate() {
            dealt[index % count].push(batch);
        }
        let scan: Arc<dyn ExecutionPlan> = MemorySourceConfig::try_new_exec(
            &dealt,
            Arc::clone(&self.data.schema),
            projection.cloned(),
        )?;
        Ok(scan)
    }

    /// The pieces of `group` (indices into the files, then the buffer) merged into one
    /// row per point. Only filters on tags and `time` prune what is read: a filter on
    /// a field must see a point's merged values, not one of its rows.
    fn merged_scan(
        &self,
        state: &dyn Session,
        group: &[usize],
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = &self.data.schema;
        let is_key = |index: usize| {
            let field = schema.field(index);
            is_point_key(field.name(), field.data_type())
        };
        let wanted: Vec<usize> = match projection {
            Some(indices) => indices.clone(),
            None => (0..schema.fields().len()).collect(),
        };
        let read: Vec<usize> = (0..schema.fields().len())
            .filter(|&index| is_key(index) || wanted.contains(&index))
            .collect();
        let key_filters: Vec<Expr> = filters
            .iter()
            .filter(|filter| {
                filter
                    .column_refs()
                    .iter()
                    .all(|column| schema.index_of(column.name()).is_ok_and(&is_key))
            })
            .cloned()
            .collect();
        // Rows the key filters rule out belong to points the query does not ask for:
        // they are left out before the merge, not only pruned by statistics.
        let read_schema = Arc::new(schema.project(&read)?);
        let key_predicate = match conjunction(key_filters.clone()) {
            Some(filter) => Some(state.create_physical_expr(
                filter,
                &DFSchema::try_from(read_schema.as_ref().clone())?,
            )?),
            None => None,
        };
        let mut inputs = Vec::with_capacity(group.len());
        for &piece in group {
            let scan = match self.data.files.get(piece) {
                Some(file) => self.parquet_scan(state, &[file], Some(&read), &key_filters, 1)?,
                None => self.buffer_scan(state, Some(&read), 1)?,
            };
            inputs.push(match &key_predicate {
                Some(predicate) => Arc::new(FilterExec::try_new(Arc::clone(predicate), scan)?),
                None => scan,
            });
        }
        let positions: Vec<usize> = wanted
            .iter()
            .map(|index| read.iter().position(|r| r == index).unwrap_or_default())
            .collect();
        Ok(Arc::new(MergedPointsExec::new(
            inputs,
            read_schema,
            positions,
        )?))
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
        // The pieces: each file, then the buffer; the groups of them that may share
        // a point are merged, the others scanned as they are.
        let files = &self.data.files;
        let mut pieces: Vec<PointSpan> = files
            .iter()
            .map(|file| PointSpan {
                min_time_ns: file.min_time_ns,
                max_time_ns: file.max_time_ns,
                unique: file.unique_points,
            })
            .collect();
        let buffered = self.data.buffered.filter(|_| !self.data.batches.is_empty());
        pieces.extend(buffered);
        let groups = merge_groups(&pieces);
        let mut merged = vec![false; pieces.len()];
        for &piece in groups.iter().flatten() {
            merged[piece] = true;
        }

        let partitions = state.config().target_partitions().max(1);
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if buffered.is_some() && !merged[files.len()] {
            inputs.push(self.buffer_scan(state, projection, partitions)?);
        }
        let plain_files: Vec<&ParquetFile> = files
            .iter()
            .enumerate()
            .filter(|(index, _)| !merged[*index])
            .map(|(_, file)| file)
            .collect();
        if !plain_files.is_empty() {
            inputs.push(self.parquet_scan(state, &plain_files, projection, filters, partitions)?);
        }
        for group in &groups {
            inputs.push(self.merged_scan(state, group, projection, filters)?);
        }
        match inputs.len() {
            0 => {
                let projected = match projection {
                    Some(indices) => Arc::new(self.data.schema.project(indices)?),
                    None => Arc::clone(&self.data.schema),
                };
                Ok(Arc::new(EmptyExec::new(projected)))
            }
            1 => Ok(inputs.remove(0)),
            _ => UnionExec::try_new(inputs),
        }
    }
}
