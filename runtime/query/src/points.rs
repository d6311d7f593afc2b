//! Point identity at query time: where rows of one point may sit in several places,
//! they are merged into one before any operator sees them.
//!
//! A table's rows are in pieces: its Parquet files (oldest first), then the buffer,
//! each described by [`PointSpan`]s (a file by one, the buffer hour by hour). Two rows of
//! one point share their time, so they can only be in two pieces where the pieces'
//! spans overlap, or in one piece at the times it says it may repeat a point. Those
//! times are the [`zones`]: each piece's rows outside every zone are scanned as they
//! are; the rows in a zone, from every piece that has any, are read by a
//! [`MergedPointsExec`], which merges them with [`sluice_storage::merge_points`], the
//! same merge that snapshots use. A late row thus costs a merge of its own hour, not
//! of the whole table.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
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

/// The most zones a query merges in: more are joined, the closest first, so that a
/// table of many small overlaps costs a bounded number of merges and filters.
const MAX_ZONES: usize = 64;

/// A range of time, both ends included, in nanoseconds since the epoch.
pub(crate) type TimeRange = (i64, i64);

/// The times at which rows of one point may be in more than one row: where two spans
/// overlap, and where a span says it may repeat a point. Sorted, apart from each other,
/// at most [`MAX_ZONES`].
pub(crate) fn zones(spans: &[PointSpan]) -> Vec<TimeRange> {
    let mut by_start: Vec<&PointSpan> = spans.iter().collect();
    by_start.sort_by_key(|span| span.min_time_ns);
    let mut found: Vec<TimeRange> = Vec::new();
    let mut reach: Option<i64> = None;
    for span in by_start {
        if let Some(reach) = reach
            && span.min_time_ns <= reach
        {
            found.push((span.min_time_ns, span.max_time_ns.min(reach)));
        }
        reach = Some(reach.map_or(span.max_time_ns, |r| r.max(span.max_time_ns)));
        found.extend(span.repeats);
    }
    found.sort_unstable();
    let mut zones: Vec<TimeRange> = Vec::with_capacity(found.len());
    for (start, end) in found {
        match zones.last_mut() {
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => zones.push((start, end)),
        }
    }
    if zones.len() > MAX_ZONES {
        // Keep the widest gaps between zones; join across the others.
        let mut gaps: Vec<usize> = (1..zones.len()).collect();
        gaps.sort_by_key(|&i| std::cmp::Reverse(zones[i].0.abs_diff(zones[i - 1].1)));
        let mut kept: Vec<usize> = gaps[..MAX_ZONES - 1].to_vec();
        kept.sort_unstable();
        let mut joined = Vec::with_capacity(MAX_ZONES);
        let mut start = 0;
        for next in kept.into_iter().chain([zones.len()]) {
            joined.push((zones[start].0, zones[next - 1].1));
            start = next;
        }
        zones = joined;
    }
    zones
}

/// Whether `span` and `range` share a time.
pub(crate) fn touches(span: &PointSpan, range: TimeRange) -> bool {
    span.min_time_ns <= range.1 && span.max_time_ns >= range.0
}

/// Whether `range` holds all of `span`.
pub(crate) fn covers(range: TimeRange, span: &PointSpan) -> bool {
    range.0 <= span.min_time_ns && span.max_time_ns <= range.1
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
            // CPU-bound for as long as the rows take to sort: off the runtime's workers.
            // The reservation goes with the work, so what it holds stays counted until
            // it is done, even if the query is not there any more to take the result.
            let (merged, reservation) = tokio::task::spawn_blocking(move || {
                let mut refused: Option<DataFusionError> = None;
                let merged = sluice_storage::merge_points(&merged_schema, &batches, &mut |bytes| {
                    reservation.try_grow(bytes).map_err(|e| {
                        let message = e.to_string();
                        refused = Some(e);
                        ArrowError::MemoryError(message)
                    })
                });
                let merged = match (merged, refused) {
                    (Ok(merged), _) => Ok(merged),
                    (Err(_), Some(refused)) => Err(refused),
                    (Err(e), None) => Err(e.into()),
                };
                (merged, reservation)
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let merged = merged?.project(&projection)?;
            reservation.resize(merged.get_array_memory_size());
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
    use crate::tests::write;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use sluice_storage::{StorageConfig, WriteBuffer};

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

    /// A late point costs a merge of its own hour's rows only.
    #[tokio::test]
    async fn a_late_point_merges_only_the_rows_of_its_hour() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = StorageConfig::local(dir.path()).expect("config");
        let storage = WriteBuffer::open(config).await.expect("opens").0;
        let hour = 3_600_000_000_000_i64;
        let body: String = (0..4)
            .flat_map(|h| (0..3).map(move |i| format!("m,h=a f={h}.{i} {}\n", h * hour + i)))
            .collect();
        write(&storage, &body).await;
        storage.snapshot().await.expect("snapshot");
        let data = storage.table_data("db", "m").expect("m");
        assert_eq!(data.files.len(), 4, "a file per hour");
        write(
            &storage,
            &format!("m,h=a f=9 {}\nm,h=a f=8 {}", hour + 1, 5 * hour),
        )
        .await;

        let plan = rows(&storage, "EXPLAIN SELECT f FROM m").await.join("\n");
        assert_eq!(
            plan.matches("MergedPointsExec: pieces=2").count(),
            1,
            "{plan}"
        );
        assert_eq!(plan.matches("MergedPointsExec").count(), 1, "{plan}");
        let values = rows(&storage, "SELECT f FROM m ORDER BY time").await;
        assert_eq!(
            values,
            [
                "| 0.0 |", "| 0.1 |", "| 0.2 |", "| 1.0 |", "| 9.0 |", "| 1.2 |", "| 2.0 |",
                "| 2.1 |", "| 2.2 |", "| 3.0 |", "| 3.1 |", "| 3.2 |", "| 8.0 |"
            ]
        );
    }

    fn span(min_time_ns: i64, max_time_ns: i64, repeats: Option<TimeRange>) -> PointSpan {
        PointSpan {
            min_time_ns,
            max_time_ns,
            repeats,
        }
    }

    #[test]
    fn zones_are_where_spans_overlap_or_say_they_repeat() {
        let spans = [
            span(0, 10, None),
            span(20, 30, None),
            span(40, 50, Some((44, 45))),
            span(25, 35, None),
            span(35, 36, None),
            span(60, 70, None),
            span(0, 100, None),
        ];
        // The last overlaps every other, whole: every span is a zone.
        assert_eq!(zones(&spans), [(0, 10), (20, 36), (40, 50), (60, 70)]);
        assert_eq!(zones(&spans[..6]), [(25, 30), (35, 35), (44, 45)]);
        assert!(zones(&[span(5, 5, None)]).is_empty());
        assert!(touches(&spans[0], (10, 12)) && !touches(&spans[0], (11, 12)));
        assert!(covers((0, 10), &spans[0]) && !covers((1, 10), &spans[0]));
    }

    #[test]
    fn many_small_zones_are_joined_closest_first() {
        // Files that each start a little before the one before ends, and one wide gap.
        let spans: Vec<PointSpan> = (0..200)
            .map(|i| {
                let start = i * 100 + if i >= 100 { 1_000_000 } else { 0 };
                span(start, start + 105, None)
            })
            .collect();
        let found = zones(&spans);
        assert_eq!(found.len(), MAX_ZONES);
        assert!(found.windows(2).all(|pair| pair[0].1 < pair[1].0));
        assert!(
            found
                .iter()
                .all(|zone| !(zone.0 < 1_000_000 && zone.1 > 1_000_000)),
            "the widest gap is kept"
        );
        // Every overlap is inside a zone.
        for i in 1..200 {
            let overlap = (spans[i].min_time_ns, spans[i - 1].max_time_ns);
            if overlap.0 <= overlap.1 {
                assert!(
                    found
                        .iter()
                        .any(|zone| zone.0 <= overlap.0 && overlap.1 <= zone.1)
                );
            }
        }
    }
}
