//! What a query's rows weigh once they leave Arrow: a string column's values each become
//! a string of their own, and a dictionary's values are copied to every row that uses
//! them. Read from the Arrow arrays before anything is converted, so that a caller can
//! refuse or cut a batch before it pays for it.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::{cast, kernels::length::length};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;

/// What the host holds for one string besides its bytes (its `String`, its place in a
/// list).
pub const STRING_OVERHEAD: u64 = 32;

/// The bytes of each row of `batch` once converted: a string's or binary's bytes plus
/// [`STRING_OVERHEAD`], 8 per number or time, 1 per boolean, and 1 per value of a column
/// that has missing values.
pub fn row_bytes(batch: &RecordBatch) -> Vec<u64> {
    let mut rows = vec![0_u64; batch.num_rows()];
    for column in batch.columns() {
        let flags = u64::from(column.null_count() > 0);
        match value_lengths(column) {
            Some(lengths) => {
                for (row, length) in rows.iter_mut().zip(lengths) {
                    *row = row.saturating_add(length + STRING_OVERHEAD + flags);
                }
            }
            None => {
                let width = if matches!(column.data_type(), DataType::Boolean) {
                    1
                } else {
                    8
                };
                for row in rows.iter_mut() {
                    *row = row.saturating_add(width + flags);
                }
            }
        }
    }
    rows
}

/// The length of each value of a string, binary or dictionary column; `None` for other
/// columns.
fn value_lengths(column: &ArrayRef) -> Option<Vec<u64>> {
    let lengths = |array: &ArrayRef| -> Option<Vec<u64>> {
        let lengths = cast(&length(array).ok()?, &DataType::Int64).ok()?;
        Some(
            lengths
                .as_primitive::<Int64Type>()
                .iter()
                .map(|n| n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
                .collect(),
        )
    };
    match column.data_type() {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => lengths(column),
        DataType::Dictionary(_, _) => {
            let dictionary = column.as_any_dictionary();
            let values = lengths(dictionary.values())?;
            Some(
                dictionary
                    .normalized_keys()
                    .into_iter()
                    .map(|key| values.get(key).copied().unwrap_or(0))
                    .collect(),
            )
        }
        _ => None,
    }
}

/// `batch` cut into slices of at most `max_bytes` each by [`row_bytes`] (a row over it
/// alone is a slice of its own). Slices share the batch's memory.
pub fn slices(batch: &RecordBatch, max_bytes: u64) -> Vec<RecordBatch> {
    let mut slices = Vec::new();
    let (mut start, mut held) = (0, 0_u64);
    for (row, bytes) in row_bytes(batch).into_iter().enumerate() {
        if row > start && held.saturating_add(bytes) > max_bytes {
            slices.push(batch.slice(start, row - start));
            (start, held) = (row, 0);
        }
        held = held.saturating_add(bytes);
    }
    if start < batch.num_rows() || slices.is_empty() {
        slices.push(batch.slice(start, batch.num_rows() - start));
    }
    slices
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{DictionaryArray, Int32Array, StringArray};
    use datafusion::arrow::datatypes::Int32Type;
    use std::sync::Arc;

    #[test]
    fn rows_weigh_what_they_become() {
        let big = "x".repeat(1000);
        let tags: DictionaryArray<Int32Type> =
            vec![big.as_str(), big.as_str(), "a"].into_iter().collect();
        let batch = RecordBatch::try_from_iter(vec![
            ("tag", Arc::new(tags) as ArrayRef),
            (
                "n",
                Arc::new(Int32Array::from(vec![Some(1), None, Some(3)])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec!["ab", "", "abc"])) as ArrayRef,
            ),
        ])
        .expect("batch");
        // The dictionary's one long value counts on each row that uses it.
        assert_eq!(
            row_bytes(&batch),
            vec![
                1000 + 32 + 9 + 2 + 32,
                1000 + 32 + 9 + 32,
                1 + 32 + 9 + 3 + 32
            ]
        );
        let cut = slices(&batch, 1160);
        assert_eq!(
            cut.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(slices(&batch, 10).len(), 3, "a row over the bound alone");
        let empty = batch.slice(0, 0);
        assert_eq!(slices(&empty, 10).len(), 1);
    }
}
