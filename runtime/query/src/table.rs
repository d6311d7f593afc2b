//! One table as DataFusion sees it: the buffer's rows and the Parquet files, unioned,
//! with the rows of one point merged where they may be several ([`crate::points`]).

use crate::points::{MergedPointsExec, TimeRange, covers, touches, zones};
use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::utils::{conjunction, disjunction};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::logical_expr::{col, lit};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
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

    /// The columns `projection` names (all when `None`), and `time` after them when it
    /// is not among them: what a scan filtered by time reads.
    fn with_time(&self, projection: Option<&Vec<usize>>) -> Result<Vec<usize>> {
        let mut columns: Vec<usize> = match projection {
            Some(indices) => indices.clone(),
            None => (0..self.data.schema.fields().len()).collect(),
        };
        let time = self.data.schema.index_of("time")?;
        if !columns.contains(&time) {
            columns.push(time);
        }
        Ok(columns)
    }

    /// The scan `scan` makes of the columns it is given (the query's, and `time`),
    /// without the rows in `zones`, projected to the query's columns.
    fn outside_zones(
        &self,
        state: &dyn Session,
        scan: impl FnOnce(&Vec<usize>) -> Result<Arc<dyn ExecutionPlan>>,
        projection: Option<&Vec<usize>>,
        zones: &[TimeRange],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let read = self.with_time(projection)?;
        let scan = scan(&read)?;
        let schema = self.data.schema.project(&read)?;
        let outside = !disjunction(zones.iter().map(|&zone| within(zone))).unwrap_or(lit(false));
        let predicate = state.create_physical_expr(outside, &DFSchema::try_from(schema)?)?;
        let wanted = projection.map_or(self.data.schema.fields().len(), Vec::len);
        Ok(Arc::new(
            FilterExecBuilder::new(predicate, scan)
                .apply_projection(Some((0..wanted).collect()))?
                .build()?,
        ))
    }

    /// The rows in `zone` of `files` (oldest first) and, if `buffer`, of the buffer,
    /// merged into one row per point. Only filters on tags and `time` prune what is
    /// read: a filter on a field must see a point's merged values, not one of its rows.
    fn merged_scan(
        &self,
        state: &dyn Session,
        zone: TimeRange,
        files: &[&ParquetFile],
        buffer: bool,
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
        // Rows outside the zone, or that the key filters rule out, belong to points the
        // merge is not asked for: they are left out before it.
        let key_filters: Vec<Expr> = filters
            .iter()
            .filter(|filter| {
                filter
                    .column_refs()
                    .iter()
                    .all(|column| schema.index_of(column.name()).is_ok_and(&is_key))
            })
            .cloned()
            .chain([within(zone)])
            .collect();
        let read_schema = Arc::new(schema.project(&read)?);
        let predicate = state.create_physical_expr(
            conjunction(key_filters.clone()).unwrap_or(lit(true)),
            &DFSchema::try_from(read_schema.as_ref().clone())?,
        )?;
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::with_capacity(files.len() + 1);
        for file in files {
            inputs.push(self.parquet_scan(state, &[file], Some(&read), &key_filters, 1)?);
        }
        if buffer {
            // Whole chunks, in the order they were written, in one partition.
            inputs.push(MemorySourceConfig::try_new_exec(
                std::slice::from_ref(&self.data.batches),
                Arc::clone(schema),
                Some(read.clone()),
            )?);
        }
        let inputs = inputs
            .into_iter()
            .map(|scan| {
                Ok(Arc::new(FilterExec::try_new(Arc::clone(&predicate), scan)?)
                    as Arc<dyn ExecutionPlan>)
            })
            .collect::<Result<Vec<_>>>()?;
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

/// `time` within `zone`, both ends included.
fn within((start, end): TimeRange) -> Expr {
    let at = |time: i64| lit(ScalarValue::TimestampNanosecond(Some(time), None));
    col(Column::from_name("time")).between(at(start), at(end))
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
        // The pieces: each file, then the buffer, hour by hour; where their rows may
        // be rows of one point, the zones, they are merged, elsewhere read as they are.
        let files = &self.data.files;
        let file_spans: Vec<PointSpan> = files
            .iter()
            .map(|file| PointSpan {
                min_time_ns: file.min_time_ns,
                max_time_ns: file.max_time_ns,
                repeats: (!file.unique_points).then_some((file.min_time_ns, file.max_time_ns)),
            })
            .collect();
        // Rows the buffer does not describe (it always does) would be merged whole.
        let undescribed = [PointSpan {
            min_time_ns: i64::MIN,
            max_time_ns: i64::MAX,
            repeats: Some((i64::MIN, i64::MAX)),
        }];
        let buffer_spans: &[PointSpan] = match (self.data.batches.is_empty(), &self.data.buffered) {
            (true, _) => &[],
            (false, spans) if spans.is_empty() => &undescribed,
            (false, spans) => spans,
        };
        let zones = zones(&[file_spans.as_slice(), buffer_spans].concat());
        let touching = |spans: &[PointSpan]| -> Vec<TimeRange> {
            zones
                .iter()
                .copied()
                .filter(|&zone| spans.iter().any(|span| touches(span, zone)))
                .collect()
        };
        let all_merged = |spans: &[PointSpan]| {
            spans
                .iter()
                .all(|span| zones.iter().any(|&zone| covers(zone, span)))
        };

        let partitions = state.config().target_partitions().max(1);
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !self.data.batches.is_empty() && !all_merged(buffer_spans) {
            let in_zones = touching(buffer_spans);
            inputs.push(if in_zones.is_empty() {
                self.buffer_scan(state, projection, partitions)?
            } else {
                let scan = |read: &Vec<usize>| self.buffer_scan(state, Some(read), partitions);
                self.outside_zones(state, scan, projection, &in_zones)?
            });
        }
        let mut untouched: Vec<&ParquetFile> = Vec::new();
        for (file, span) in files.iter().zip(&file_spans) {
            let in_zones = touching(std::slice::from_ref(span));
            if in_zones.is_empty() {
                untouched.push(file);
            } else if !all_merged(std::slice::from_ref(span)) {
                let scan =
                    |read: &Vec<usize>| self.parquet_scan(state, &[file], Some(read), filters, 1);
                inputs.push(self.outside_zones(state, scan, projection, &in_zones)?);
            }
        }
        if !untouched.is_empty() {
            inputs.push(self.parquet_scan(state, &untouched, projection, filters, partitions)?);
        }
        for &zone in &zones {
            let members: Vec<&ParquetFile> = files
                .iter()
                .zip(&file_spans)
                .filter(|(_, span)| touches(span, zone))
                .map(|(file, _)| file)
                .collect();
            let buffer = buffer_spans.iter().any(|span| touches(span, zone));
            inputs.push(self.merged_scan(state, zone, &members, buffer, projection, filters)?);
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
