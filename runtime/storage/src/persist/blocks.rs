//! A snapshot's rows of one table cut into files by the hour their `time` falls in, so
//! that a file covers a short span and rows written late (for an hour long past) land
//! in a file of their own hour: a query merges the rows of a point only across files
//! whose spans overlap, and a late row then overlaps one hour's files, not every file
//! written since.

use crate::buffer::FrozenTable;
use crate::points::HOUR_NS;
use arrow::array::{AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::TimestampNanosecondType;
use std::collections::BTreeMap;

/// The most files one table's rows are cut into by a snapshot: rows spread over more
/// hours than this (a backfill of years) get files of several consecutive hours each.
const MAX_FILES: usize = 24;

/// `table`'s rows cut by hour, oldest hour first; one table as it is when its rows all
/// fall in one hour.
pub(super) fn cut_by_hour(table: FrozenTable) -> Result<Vec<FrozenTable>, String> {
    // The usual case, rows of the last minutes, is found without a pass over each row.
    let (first, last) = super::time_range(&table.batches);
    if first.div_euclid(HOUR_NS) == last.div_euclid(HOUR_NS) {
        return Ok(vec![table]);
    }
    // For each batch, its rows' positions per hour.
    let mut rows_by_hour: BTreeMap<i64, Vec<(usize, Vec<u32>)>> = BTreeMap::new();
    for (index, batch) in table.batches.iter().enumerate() {
        let times = batch
            .column_by_name("time")
            .and_then(|column| column.as_primitive_opt::<TimestampNanosecondType>())
            .ok_or("a snapshot's batch has no time column")?;
        let mut positions: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (row, time) in times.values().iter().enumerate() {
            positions
                .entry(time.div_euclid(HOUR_NS))
                .or_default()
                .push(row as u32);
        }
        for (hour, rows) in positions {
            rows_by_hour.entry(hour).or_default().push((index, rows));
        }
    }
    if rows_by_hour.len() <= 1 {
        return Ok(vec![table]);
    }
    let hours: Vec<_> = rows_by_hour.into_values().collect();
    let per_file = hours.len().div_ceil(MAX_FILES);
    hours
        .chunks(per_file)
        .map(|span| {
            let mut batches = Vec::new();
            for (index, rows) in span.iter().flatten() {
                let rows = UInt32Array::from(rows.clone());
                batches.push(
                    take_record_batch(&table.batches[*index], &rows).map_err(|e| e.to_string())?,
                );
            }
            Ok(FrozenTable {
                database: table.database.clone(),
                table: table.table.clone(),
                schema: table.schema.clone(),
                batches: batches
                    .into_iter()
                    .filter(|b: &RecordBatch| b.num_rows() > 0)
                    .collect(),
                unique: table.unique,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::Buffer;
    use sluice_lp::{Precision, parse};

    fn frozen(body: &str) -> FrozenTable {
        let mut buffer = Buffer::default();
        buffer.append("db", &parse(body, Precision::Second, 0).lines);
        buffer.freeze(1).remove(0)
    }

    fn spans(tables: &[FrozenTable]) -> Vec<Vec<i64>> {
        tables
            .iter()
            .map(|table| {
                table
                    .batches
                    .iter()
                    .flat_map(|b| {
                        let times = b.column_by_name("time").expect("time");
                        times
                            .as_primitive::<TimestampNanosecondType>()
                            .values()
                            .iter()
                            .map(|t| t / 1_000_000_000)
                            .collect::<Vec<_>>()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn rows_of_one_hour_stay_one_file_and_others_get_their_own() {
        assert_eq!(
            spans(&cut_by_hour(frozen("m f=1 10\nm f=2 3599")).expect("cut")),
            [vec![10, 3599]]
        );
        let cut = cut_by_hour(frozen("m f=1 7300\nm f=2 10\nm f=3 7200\nm f=4 -1")).expect("cut");
        assert_eq!(spans(&cut), [vec![-1], vec![10], vec![7300, 7200]]);
    }

    #[test]
    fn rows_over_many_hours_make_a_bounded_number_of_files() {
        let body: String = (0..1000)
            .map(|hour| format!("m f={hour} {}\n", hour * 3600))
            .collect();
        let cut = cut_by_hour(frozen(&body)).expect("cut");
        assert!(cut.len() <= MAX_FILES, "{} files", cut.len());
        let rows: Vec<i64> = spans(&cut).concat();
        assert_eq!(rows, (0..1000).map(|hour| hour * 3600).collect::<Vec<_>>());
    }
}
