//! Point identity at query time: where rows of one point may sit in several places,
//! they are merged into one before any operator sees them.
//!
//! A table's rows are in pieces: its Parquet files (oldest first), then the buffer.
//! Two pieces can share a point only if their time ranges overlap, and one piece only
//! if it is not known to be free of repeats (the buffer after a repeat or a write out
//! of time order; a file written before point identity). [`merge_groups`] finds the
//! pieces that need merging, in groups; [`MergedPointsExec`] reads a group's pieces
//! in order and merges them with [`sluice_storage::merge_points`], the same merge that
//! snapshots use. Every other piece is scanned as it is.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};
use sluice_storage::PointSpan;
use std::sync::Arc;

/// Which pieces must be merged: groups of piece indices (each ascending, so oldest
/// first) whose time ranges chain into each other, leaving out any piece that stands
/// alone and is free of repeats.
pub(crate) fn merge_groups(pieces: &[PointSpan]) -> Vec<Vec<usize>> {
    let mut by_start: Vec<usize> = (0..pieces.len()).collect();
    by_start.sort_by_key(|&index| pieces[index].min_time_ns);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_end = i64::MIN;
    for index in by_start {
        let piece = pieces[index];
        match groups.last_mut() {
            Some(group) if piece.min_time_ns <= group_end => {
                group.push(index);
                group_end = group_end.max(piece.max_time_ns);
            }
            _ => {
                groups.push(vec![index]);
                group_end = piece.max_time_ns;
            }
        }
    }
    groups.retain(|group| group.len() > 1 || !pieces[group[0]].unique);
    for group in &mut groups {
        group.sort_unstable();
    }
    groups
}

/// Reads its inputs (one partition each, oldest first) whole, merges the rows of each
/// point, and yields them in batches of the session's size.
#[derive(Debug)]
pub(crate) struct MergedPointsExec {
    inputs: Vec<Arc<dyn ExecutionPlan>>,
    /// The inputs' schema: every tag and `time`, and the fields the query reads.
    merged_schema: SchemaRef,
    /// The columns of `merged_schema` the query asked for, in its order.
    projection: Vec<usize>,
    properties: Arc<PlanProperties>,
}

impl MergedPointsExec {
    /// Merges `inputs` (each of `merged_schema`, one partition) and yields the columns
    /// at `projection`.
    ///
    /// # Errors
    ///
    /// A projection outside `merged_schema`.
    pub(crate) fn new(
        inputs: Vec<Arc<dyn ExecutionPlan>>,
        merged_schema: SchemaRef,
        projection: Vec<usize>,
    ) -> Result<Self> {
        let output = Arc::new(merged_schema.project(&projection)?);
        let properties = PlanProperties::new(
            EquivalenceProperties::new(output),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(Self {
            inputs,
            merged_schema,
            projection,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for MergedPointsExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "MergedPointsExec: pieces={}", self.inputs.len())
    }
}

impl ExecutionPlan for MergedPointsExec {
    fn name(&self) -> &str {
        "MergedPointsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        // The inputs are read here, in order, one partition each: the optimizer must
        // not split or reorder them.
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "MergedPointsExec has one partition, not {partition}"
            )));
        }
        let inputs = self.inputs.clone();
        let merged_schema = Arc::clone(&self.merged_schema);
        let projection = self.projection.clone();
        let output = self.schema();
        let rows_per_batch = context.session_config().batch_size().max(1);
        let merged = async move {
            let reservation =
                MemoryConsumer::new("MergedPointsExec").register(context.memory_pool());
            let mut batches = Vec::new();
            for input in inputs {
                let mut stream = input.execute(0, Arc::clone(&context))?;
                while let Some(batch) = stream.try_next().await? {
                    reservation.try_grow(batch.get_array_memory_size())?;
                    batches.push(batch);
                }
            }
            // The merge holds the rows twice over while it works.
            reservation.try_grow(reservation.size())?;
            // CPU-bound for as long as the rows take to sort: off the runtime's workers.
            let merged = tokio::task::spawn_blocking(move || {
                sluice_storage::merge_points(&merged_schema, &batches)
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??
            .project(&projection)?;
            let pieces: Vec<Result<RecordBatch>> = (0..merged.num_rows())
                .step_by(rows_per_batch)
                .map(|at| Ok(merged.slice(at, rows_per_batch.min(merged.num_rows() - at))))
                .collect();
            // Held until the last batch is taken.
            Ok::<_, DataFusionError>(futures::stream::iter(pieces).inspect(move |_| {
                let _ = &reservation;
            }))
        };
        let stream = futures::stream::once(merged).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(output, stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QueryEngine;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use sluice_storage::{StorageConfig, WriteBuffer, WriteRequest};

    async fn write(storage: &Arc<WriteBuffer>, body: &str) {
        let request = WriteRequest {
            database: "db",
            body,
            precision: sluice_lp::Precision::Nanosecond,
            accept_partial: false,
            no_sync: true,
            default_time_ns: 0,
            create_database: true,
        };
        storage.write_lp(request).await.expect("written");
        storage.flush().await.expect("flushed");
    }

    async fn rows(storage: &Arc<WriteBuffer>, sql: &str) -> Vec<String> {
        let engine = QueryEngine::new(Arc::clone(storage));
        let output = engine
            .sql("db", sql, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        pretty_format_batches(&output.batches)
            .expect("formats")
            .to_string()
            .lines()
            .filter(|line| line.starts_with("| "))
            .skip(1)
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    /// Every case of point identity, over the buffer, Parquet files and a restart.
    #[tokio::test]
    async fn a_point_written_again_is_one_point_with_its_fields_merged() {
        let dir = tempfile::tempdir().expect("temp dir");
        let open = || async {
            let config = StorageConfig::local(dir.path()).expect("config");
            WriteBuffer::open(config).await.expect("opens").0
        };
        let storage = open().await;
        let all = "SELECT h, f, g FROM m ORDER BY h, time";
        // Repeats in one write, and in the buffer.
        write(&storage, "m,h=a f=1,g=1 10\nm,h=b f=1 10\nm,h=b f=5 10").await;
        write(&storage, "m,h=c,r=x f=1 20").await;
        assert_eq!(
            rows(&storage, all).await,
            ["| a | 1.0 | 1.0 |", "| b | 5.0 | |", "| c | 1.0 | |"]
        );

        // Persisted, then overwritten from the buffer: only `f` changes for `a`.
        storage.snapshot().await.expect("snapshot");
        let data = storage.table_data("db", "m").expect("m");
        assert_eq!(data.files[0].rows, 3, "the file holds each point once");
        write(&storage, "m,h=a f=2 10").await;
        let expected = ["| a | 2.0 | 1.0 |", "| b | 5.0 | |", "| c | 1.0 | |"];
        assert_eq!(rows(&storage, all).await, expected);
        // A filter on a field sees the merged point, not an older row of it.
        assert_eq!(
            rows(&storage, "SELECT h FROM m WHERE f = 1 ORDER BY h").await,
            ["| c |"]
        );
        assert_eq!(rows(&storage, "SELECT count(*) FROM m").await, ["| 3 |"]);

        // Two files that share a point, then a restart.
        storage.snapshot().await.expect("snapshot");
        let data = storage.table_data("db", "m").expect("m");
        assert_eq!((data.files.len(), data.batches.len()), (2, 0));
        assert_eq!(rows(&storage, all).await, expected);
        write(&storage, "m,r=x,h=c g=7 20").await;
        drop(storage);
        let storage = open().await;
        assert_eq!(
            rows(&storage, all).await,
            ["| a | 2.0 | 1.0 |", "| b | 5.0 | |", "| c | 1.0 | 7.0 |"],
            "the tag order of a write does not matter, and a restart keeps the merge"
        );
        assert_eq!(
            rows(&storage, "SELECT g FROM m WHERE h = 'c'").await,
            ["| 7.0 |"]
        );
    }

    fn piece(min_time_ns: i64, max_time_ns: i64, unique: bool) -> PointSpan {
        PointSpan {
            min_time_ns,
            max_time_ns,
            unique,
        }
    }

    #[test]
    fn only_overlapping_or_repeating_pieces_are_merged() {
        let pieces = [
            piece(0, 10, true),   // 0: alone
            piece(20, 30, true),  // 1: overlaps 3
            piece(40, 50, false), // 2: alone, but repeats
            piece(25, 35, true),  // 3
            piece(35, 36, true),  // 4: touches 3 at 35
            piece(60, 70, true),  // 5: alone
        ];
        assert_eq!(merge_groups(&pieces), vec![vec![1, 3, 4], vec![2]]);
    }

    #[test]
    fn a_long_piece_spans_the_ones_inside_it() {
        let pieces = [
            piece(0, 100, true),
            piece(10, 20, true),
            piece(50, 60, true),
        ];
        assert_eq!(merge_groups(&pieces), vec![vec![0, 1, 2]]);
        assert!(merge_groups(&[piece(5, 5, true)]).is_empty());
    }
}
