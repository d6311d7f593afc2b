//! Point identity, as InfluxDB has it: the rows of one table with the same tag set and
//! the same `time` are one point. Written again, a point keeps the fields it had and
//! takes the new values of the fields the later write names; a field no write names is
//! null.
//!
//! Two pieces carry it out. [`merge_points`] makes the rows of each point one row,
//! later rows winning field by field; snapshots use it so that no Parquet file repeats
//! a point, and queries use it wherever rows of one point may sit in several places
//! (the buffer and files whose time ranges overlap). [`PointWatch`] is how the buffer
//! knows, cheaply and without false negatives, whether its rows may repeat a point, so
//! that rows that cannot are queried and persisted as they are.

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use sluice_lp::Line;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

/// Whether the column is part of a point's identity: a tag (tags, and only tags, are
/// dictionary columns) or `time`.
pub fn is_point_key(name: &str, data_type: &DataType) -> bool {
    name == "time" || matches!(data_type, DataType::Dictionary(..))
}

/// The rows of `batches` (of `schema`, oldest first) with each point's rows made one:
/// the tags and time they share, and for each field the value of the latest row that
/// has one. The rows come out ordered by tag set and time.
///
/// # Errors
///
/// A batch whose schema is not `schema`.
pub fn merge_points(
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<RecordBatch, ArrowError> {
    let batch = concat_batches(schema, batches)?;
    let rows = batch.num_rows();
    let keys: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, field)| is_point_key(field.name(), field.data_type()))
        .map(|(index, _)| index)
        .collect();
    let converter = RowConverter::new(
        keys.iter()
            .map(|&index| SortField::new(schema.field(index).data_type().clone()))
            .collect(),
    )?;
    let key_columns: Vec<ArrayRef> = keys
        .iter()
        .map(|&index| Arc::clone(batch.column(index)))
        .collect();
    let identities = converter.convert_columns(&key_columns)?;
    let mut order: Vec<u32> = (0..rows as u32).collect();
    // Stable: the rows of one point stay oldest first.
    order.sort_by(|&a, &b| identities.row(a as usize).cmp(&identities.row(b as usize)));

    let mut firsts: Vec<u32> = Vec::new();
    let mut winners: Vec<Vec<Option<u32>>> = vec![Vec::new(); batch.num_columns()];
    let mut start = 0;
    while start < rows {
        let identity = identities.row(order[start] as usize);
        let mut end = start + 1;
        while end < rows && identities.row(order[end] as usize) == identity {
            end += 1;
        }
        let point = &order[start..end];
        firsts.push(point[0]);
        for (index, column) in batch.columns().iter().enumerate() {
            if !keys.contains(&index) {
                let latest = point
                    .iter()
                    .rev()
                    .find(|&&row| column.is_valid(row as usize));
                winners[index].push(latest.copied());
            }
        }
        start = end;
    }

    let firsts = UInt32Array::from(firsts);
    let columns = batch
        .columns()
        .iter()
        .enumerate()
        .map(|(index, column)| {
            if keys.contains(&index) {
                take(column, &firsts, None)
            } else {
                take(
                    column,
                    &UInt32Array::from(std::mem::take(&mut winners[index])),
                    None,
                )
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// The time range of some rows, and whether two of them may be one point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointSpan {
    /// The smallest `time`, nanoseconds since the epoch.
    pub min_time_ns: i64,
    /// The largest `time`.
    pub max_time_ns: i64,
    /// No two of the rows are the same point.
    pub unique: bool,
}

/// What a table's buffer knows of its rows' points: for each series, the latest time
/// written, so that a row at that time or earlier (a repeat, or a write out of time
/// order) marks the rows as possibly repeating a point. It keeps two generations: the
/// rows a snapshot is persisting, and the rows since, so that once the snapshot's rows
/// leave, what is said of the rest is still exact.
#[derive(Debug, Default)]
pub(crate) struct PointWatch {
    /// Latest time per series (the hash of its tag set) among the rows since the last
    /// freeze.
    latest: HashMap<u64, i64>,
    /// The same among the rows being persisted.
    frozen: HashMap<u64, i64>,
    /// The rows since the last freeze, and whether they may repeat a point.
    since_freeze: Option<PointSpan>,
    /// All rows in the buffer, and whether they may repeat a point.
    all: Option<PointSpan>,
}

impl PointWatch {
    /// Notes a row appended to the buffer.
    pub(crate) fn note(&mut self, line: &Line) {
        let series = series_hash(line);
        let time = line.time_ns;
        let mut repeats = false;
        self.latest
            .entry(series)
            .and_modify(|latest| {
                repeats = time <= *latest;
                *latest = (*latest).max(time);
            })
            .or_insert(time);
        let repeats_frozen = self
            .frozen
            .get(&series)
            .is_some_and(|&latest| time <= latest);
        widen(&mut self.since_freeze, time, repeats);
        widen(&mut self.all, time, repeats || repeats_frozen);
    }

    /// All rows in the buffer become the rows a snapshot persists.
    pub(crate) fn freeze(&mut self) {
        merge_latest(&mut self.frozen, std::mem::take(&mut self.latest));
        self.since_freeze = None;
    }

    /// The rows the snapshot persisted left the buffer.
    pub(crate) fn persisted(&mut self) {
        self.frozen = HashMap::new();
        self.all = self.since_freeze;
    }

    /// The snapshot did not persist its rows: they are ordinary rows again.
    pub(crate) fn abandoned(&mut self) {
        merge_latest(&mut self.latest, std::mem::take(&mut self.frozen));
        self.since_freeze = self.all;
    }

    /// The buffer's rows: their time range and whether they may repeat a point.
    pub(crate) fn span(&self) -> Option<PointSpan> {
        self.all
    }

    /// The memory the watch takes.
    pub(crate) fn bytes(&self) -> usize {
        // A hash table entry: the key, the value and a control byte, rounded up.
        (self.latest.capacity() + self.frozen.capacity()) * 24
    }
}

fn widen(span: &mut Option<PointSpan>, time: i64, repeats: bool) {
    let current = span.get_or_insert(PointSpan {
        min_time_ns: time,
        max_time_ns: time,
        unique: true,
    });
    current.min_time_ns = current.min_time_ns.min(time);
    current.max_time_ns = current.max_time_ns.max(time);
    current.unique &= !repeats;
}

fn merge_latest(into: &mut HashMap<u64, i64>, from: HashMap<u64, i64>) {
    for (series, time) in from {
        into.entry(series)
            .and_modify(|latest| *latest = (*latest).max(time))
            .or_insert(time);
    }
}

/// A hash of the line's tag set, whatever the order its tags are written in. Two
/// series with one hash only make the watch more cautious.
fn series_hash(line: &Line) -> u64 {
    line.tags.iter().fold(0u64, |sum, tag| {
        let mut hasher = DefaultHasher::new();
        tag.hash(&mut hasher);
        sum.wrapping_add(hasher.finish())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::arrow_schema;
    use arrow::array::{DictionaryArray, Float64Array, StringArray, TimestampNanosecondArray};
    use arrow::datatypes::Int32Type;
    use sluice_catalog::ColumnType;
    use sluice_lp::{Precision, parse};

    fn schema() -> SchemaRef {
        arrow_schema(&[
            ("host".into(), ColumnType::Tag),
            ("usage".into(), ColumnType::Float),
            ("note".into(), ColumnType::String),
            ("time".into(), ColumnType::Time),
        ])
    }

    /// host, usage, note, time.
    type Row<'a> = (Option<&'a str>, Option<f64>, Option<&'a str>, i64);

    fn batch(rows: &[Row]) -> RecordBatch {
        let hosts: DictionaryArray<Int32Type> = rows.iter().map(|r| r.0).collect();
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(hosts),
                Arc::new(rows.iter().map(|r| r.1).collect::<Float64Array>()),
                Arc::new(rows.iter().map(|r| r.2).collect::<StringArray>()),
                Arc::new(TimestampNanosecondArray::from(
                    rows.iter().map(|r| r.3).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("batch")
    }

    fn rows(batch: &RecordBatch) -> Vec<String> {
        let formatted = arrow::util::pretty::pretty_format_batches(std::slice::from_ref(batch))
            .expect("formats")
            .to_string();
        formatted
            .lines()
            .skip(3)
            .filter(|l| l.starts_with('|'))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn later_rows_win_field_by_field_and_other_points_stay_apart() {
        let older = batch(&[
            (Some("a"), Some(1.0), Some("first"), 10),
            (Some("b"), Some(2.0), None, 10),
            (None, Some(3.0), None, 10),
        ]);
        let newer = batch(&[
            (Some("a"), None, Some("second"), 10),
            (Some("a"), Some(5.0), None, 20),
            (None, Some(6.0), None, 10),
            (Some("a"), Some(7.0), None, 10),
        ]);
        let merged = merge_points(&schema(), &[older, newer]).expect("merges");
        let mut got = rows(&merged);
        got.sort();
        let mut want: Vec<String> = rows(&batch(&[
            (Some("a"), Some(7.0), Some("second"), 10),
            (Some("a"), Some(5.0), None, 20),
            (Some("b"), Some(2.0), None, 10),
            (None, Some(6.0), None, 10),
        ]));
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn rows_of_distinct_points_all_come_out() {
        let one = batch(&[
            (Some("a"), Some(1.0), None, 1),
            (Some("a"), Some(2.0), None, 2),
        ]);
        let merged = merge_points(&schema(), std::slice::from_ref(&one)).expect("merges");
        assert_eq!(merged.num_rows(), 2);
        let values = merged
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("f64");
        assert_eq!(values.values(), &[1.0, 2.0]);
    }

    #[test]
    fn the_watch_flags_repeats_and_out_of_order_rows_and_forgets_persisted_ones() {
        let lines = |text: &str| parse(text, Precision::Nanosecond, 0).lines;
        let mut watch = PointWatch::default();
        for line in lines("m,a=1,b=2 f=1 10\nm,b=2,a=1 f=1 20\nm,a=2 f=1 5") {
            watch.note(&line);
        }
        let span = watch.span().expect("rows");
        assert_eq!(
            (span.min_time_ns, span.max_time_ns, span.unique),
            (5, 20, true)
        );

        // Tag order does not make another series.
        watch.note(&lines("m,b=2,a=1 f=2 20")[0]);
        assert!(!watch.span().expect("rows").unique);

        // A snapshot takes them; a row after it repeats a frozen point.
        watch.freeze();
        watch.note(&lines("m,a=2 f=9 5")[0]);
        assert!(!watch.span().expect("rows").unique);
        watch.persisted();
        let span = watch.span().expect("rows");
        assert_eq!(
            (span.min_time_ns, span.max_time_ns, span.unique),
            (5, 5, true)
        );

        // An abandoned snapshot leaves its rows counted.
        watch.note(&lines("m,a=3 f=1 30")[0]);
        watch.freeze();
        watch.abandoned();
        watch.note(&lines("m,a=3 f=2 30")[0]);
        assert!(!watch.span().expect("rows").unique);
    }
}
