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
use foldhash::HashMap;
use sluice_lp::Line;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::hash::BuildHasher;
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
/// `grow` is asked for each amount of memory the merge takes beyond `batches` (their
/// copy in one batch, the keys to sort by, the order, the result), before it takes it.
///
/// # Errors
///
/// A batch whose schema is not `schema`, more than `u32::MAX` rows, or `grow`'s.
pub fn merge_points(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    grow: &mut dyn FnMut(usize) -> Result<(), ArrowError>,
) -> Result<RecordBatch, ArrowError> {
    let in_rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let rows = u32::try_from(in_rows)
        .map_err(|_| ArrowError::MemoryError(format!("{in_rows} rows are too many to merge")))?;
    grow(batches.iter().map(RecordBatch::get_array_memory_size).sum())?;
    let batch = concat_batches(schema, batches)?;
    let is_key: Vec<bool> = schema
        .fields()
        .iter()
        .map(|field| is_point_key(field.name(), field.data_type()))
        .collect();
    let converter = RowConverter::new(
        schema
            .fields()
            .iter()
            .zip(&is_key)
            .filter(|(_, key)| **key)
            .map(|(field, _)| SortField::new(field.data_type().clone()))
            .collect(),
    )?;
    let key_columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(&is_key)
        .filter(|(_, key)| **key)
        .map(|(column, _)| Arc::clone(column))
        .collect();
    let identities = converter.convert_columns(&key_columns)?;
    // The order, and for each column the row each point takes its value from.
    grow(identities.size() + in_rows * 4 * (1 + batch.num_columns()))?;
    let mut order: Vec<u32> = (0..rows).collect();
    // Stable: the rows of one point stay oldest first.
    order.sort_by(|&a, &b| identities.row(a as usize).cmp(&identities.row(b as usize)));

    let mut firsts: Vec<u32> = Vec::new();
    let mut winners: Vec<Vec<Option<u32>>> = vec![Vec::new(); batch.num_columns()];
    let mut start = 0;
    while start < order.len() {
        let identity = identities.row(order[start] as usize);
        let mut end = start + 1;
        while end < order.len() && identities.row(order[end] as usize) == identity {
            end += 1;
        }
        let point = &order[start..end];
        firsts.push(point[0]);
        for ((column, key), winners) in batch.columns().iter().zip(&is_key).zip(&mut winners) {
            if !key {
                let latest = point
                    .iter()
                    .rev()
                    .find(|&&row| column.is_valid(row as usize));
                winners.push(latest.copied());
            }
        }
        start = end;
    }
    drop(identities);

    let firsts = UInt32Array::from(firsts);
    let columns = batch
        .columns()
        .iter()
        .zip(&is_key)
        .zip(winners)
        .map(|((column, key), winners)| {
            if *key {
                take(column, &firsts, None)
            } else {
                take(column, &UInt32Array::from(winners), None)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// Rows of one table in one place (a file, an hour of the buffer): their time range,
/// and the times at which two of them may be one point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointSpan {
    /// The smallest `time`, nanoseconds since the epoch.
    pub min_time_ns: i64,
    /// The largest `time`.
    pub max_time_ns: i64,
    /// The smallest and largest time of a row that may repeat the point of another
    /// among them; `None` when no two of them are one point.
    pub repeats: Option<(i64, i64)>,
}

/// An hour of time: the buffer describes its rows hour by hour, so that a row written
/// late does not make its span cover every hour in between.
pub(crate) const HOUR_NS: i64 = 3_600 * 1_000_000_000;

/// What a table's buffer knows of its rows' points: for each series, the latest time
/// written, so that a row at that time or earlier (a repeat, or a write out of time
/// order) is noted as possibly repeating a point (one of its own time). Its rows are
/// described hour by hour ([`PointSpan`]). It keeps two generations: the rows a
/// snapshot is persisting, and the rows since, so that once the snapshot's rows leave,
/// what is said of the rest is still exact.
#[derive(Debug, Default)]
pub(crate) struct PointWatch {
    /// Hashes tag sets; seeded per table, so no one can aim writes at collisions.
    hashing: foldhash::fast::RandomState,
    /// Latest time per series (the hash of its tag set) among the rows since the last
    /// freeze.
    latest: HashMap<u64, i64>,
    /// The same among the rows being persisted.
    frozen: HashMap<u64, i64>,
    /// The rows since the last freeze, by hour.
    since_freeze: BTreeMap<i64, PointSpan>,
    /// All rows in the buffer, by hour.
    all: BTreeMap<i64, PointSpan>,
}

impl PointWatch {
    /// Notes a row appended to the buffer.
    pub(crate) fn note(&mut self, line: &Line) {
        let series = self.series(line);
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
        let hour = time.div_euclid(HOUR_NS);
        widen(self.since_freeze.entry(hour), time, repeats);
        widen(self.all.entry(hour), time, repeats || repeats_frozen);
    }

    /// A hash of the line's tag set, whatever the order its tags are written in. Two
    /// series with one hash only make the watch more cautious.
    fn series(&self, line: &Line) -> u64 {
        line.tags.iter().fold(0u64, |sum, tag| {
            sum.wrapping_add(self.hashing.hash_one(tag))
        })
    }

    /// All rows in the buffer become the rows a snapshot persists.
    pub(crate) fn freeze(&mut self) {
        merge_latest(&mut self.frozen, std::mem::take(&mut self.latest));
        self.since_freeze.clear();
    }

    /// The rows the snapshot persisted left the buffer.
    pub(crate) fn persisted(&mut self) {
        self.frozen = HashMap::default();
        self.all = self.since_freeze.clone();
    }

    /// The snapshot did not persist its rows: they are ordinary rows again.
    pub(crate) fn abandoned(&mut self) {
        merge_latest(&mut self.latest, std::mem::take(&mut self.frozen));
        self.since_freeze = self.all.clone();
    }

    /// The buffer's rows, hour by hour, oldest first.
    pub(crate) fn spans(&self) -> Vec<PointSpan> {
        self.all.values().copied().collect()
    }

    /// Whether no two of the buffer's rows are one point.
    pub(crate) fn unique(&self) -> bool {
        self.all.values().all(|span| span.repeats.is_none())
    }

    /// The memory the watch takes.
    pub(crate) fn bytes(&self) -> usize {
        // A hash table entry: the key, the value and a control byte, rounded up; a
        // B-tree entry: its key and value, and its share of a node.
        (self.latest.capacity() + self.frozen.capacity()) * 24
            + (self.since_freeze.len() + self.all.len()) * 64
    }
}

fn widen(entry: Entry<'_, i64, PointSpan>, time: i64, repeats: bool) {
    let span = entry.or_insert(PointSpan {
        min_time_ns: time,
        max_time_ns: time,
        repeats: None,
    });
    span.min_time_ns = span.min_time_ns.min(time);
    span.max_time_ns = span.max_time_ns.max(time);
    if repeats {
        let (low, high) = span.repeats.get_or_insert((time, time));
        *low = (*low).min(time);
        *high = (*high).max(time);
    }
}

fn merge_latest(into: &mut HashMap<u64, i64>, from: HashMap<u64, i64>) {
    for (series, time) in from {
        into.entry(series)
            .and_modify(|latest| *latest = (*latest).max(time))
            .or_insert(time);
    }
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
        let merged = merge_points(&schema(), &[older, newer], &mut |_| Ok(())).expect("merges");
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
        let merged =
            merge_points(&schema(), std::slice::from_ref(&one), &mut |_| Ok(())).expect("merges");
        assert_eq!(merged.num_rows(), 2);
        let values = merged
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("f64");
        assert_eq!(values.values(), &[1.0, 2.0]);
    }

    #[test]
    fn the_watch_notes_repeats_and_out_of_order_rows_at_their_times_and_forgets_persisted_ones() {
        let lines = |text: &str| parse(text, Precision::Second, 0).lines;
        let spans = |watch: &PointWatch| {
            watch
                .spans()
                .iter()
                .map(|s| {
                    let second = |t: i64| t / 1_000_000_000;
                    (
                        second(s.min_time_ns),
                        second(s.max_time_ns),
                        s.repeats.map(|(a, b)| (second(a), second(b))),
                    )
                })
                .collect::<Vec<_>>()
        };
        let mut watch = PointWatch::default();
        for line in lines("m,a=1,b=2 f=1 10\nm,b=2,a=1 f=1 20\nm,a=2 f=1 5\nm,a=2 f=1 7205") {
            watch.note(&line);
        }
        assert_eq!(spans(&watch), [(5, 20, None), (7205, 7205, None)]);
        assert!(watch.unique());

        // Tag order does not make another series; a late row is noted at its own time.
        watch.note(&lines("m,b=2,a=1 f=2 20")[0]);
        watch.note(&lines("m,a=2 f=2 6")[0]);
        assert_eq!(spans(&watch), [(5, 20, Some((6, 20))), (7205, 7205, None)]);
        assert!(!watch.unique());

        // A snapshot takes them; a row after it repeats a frozen point.
        watch.freeze();
        watch.note(&lines("m,a=2 f=9 5")[0]);
        assert_eq!(
            spans(&watch).len(),
            2,
            "frozen rows are still in the buffer"
        );
        assert!(!watch.unique());
        watch.persisted();
        assert_eq!(spans(&watch), [(5, 5, None)]);

        // An abandoned snapshot leaves its rows counted.
        watch.note(&lines("m,a=3 f=1 30")[0]);
        watch.freeze();
        watch.abandoned();
        watch.note(&lines("m,a=3 f=2 30")[0]);
        assert_eq!(spans(&watch), [(5, 30, Some((30, 30)))]);
    }
}
