//! Columns in the compact wire encodings of the WIT `column-values` variant.

use crate::wit::types;
use sluice_plugin_api::{Column, ColumnValues, TableBatch};
use std::collections::HashMap;

/// Encodes a table batch (the rows are not copied, only encoded).
pub(crate) fn batch_to_wit(batch: &TableBatch) -> types::TableBatch {
    types::TableBatch {
        table_name: batch.table_name.clone(),
        row_count: batch.row_count,
        columns: batch.columns.iter().map(column_to_wit).collect(),
    }
}

/// Encodes a column.
pub(crate) fn column_to_wit(column: &Column) -> types::Column {
    let values = match &column.values {
        ColumnValues::Tag(v) => types::ColumnValues::Tag(dictionary(v)),
        ColumnValues::String(v) => types::ColumnValues::String(dictionary(v)),
        ColumnValues::Int(v) => types::ColumnValues::Int(le_bytes(v, i64::to_le_bytes)),
        ColumnValues::Time(v) => types::ColumnValues::Time(le_bytes(v, i64::to_le_bytes)),
        ColumnValues::UInt(v) => types::ColumnValues::Uint(le_bytes(v, u64::to_le_bytes)),
        ColumnValues::Float(v) => types::ColumnValues::Float(le_bytes(v, f64::to_le_bytes)),
        ColumnValues::Boolean(v) => {
            types::ColumnValues::Boolean(v.iter().map(|b| u8::from(*b)).collect())
        }
    };
    let present = column
        .present
        .as_ref()
        .map(|flags| flags.iter().map(|f| u8::from(*f)).collect());
    types::Column {
        name: column.name.clone(),
        values,
        present,
    }
}

fn le_bytes<T: Copy>(values: &[T], to_bytes: fn(T) -> [u8; 8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(values.len() * 8);
    for value in values {
        bytes.extend_from_slice(&to_bytes(*value));
    }
    bytes
}

/// Folds repeated strings: distinct values in first-seen order, and a little-endian u32
/// index per row.
fn dictionary(strings: &[String]) -> types::Dictionary {
    let mut positions: HashMap<&str, u32> = HashMap::new();
    let mut values = Vec::new();
    let mut indices = Vec::with_capacity(strings.len() * 4);
    for string in strings {
        let next = u32::try_from(values.len()).unwrap_or(u32::MAX);
        let index = *positions.entry(string).or_insert_with(|| {
            values.push(string.clone());
            next
        });
        indices.extend_from_slice(&index.to_le_bytes());
    }
    types::Dictionary { values, indices }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_fold_and_numbers_are_little_endian() {
        let column = column_to_wit(&Column {
            name: "host".into(),
            values: ColumnValues::Tag(vec!["a".into(), "b".into(), "a".into()]),
            present: Some(vec![true, false, true]),
        });
        let types::ColumnValues::Tag(dictionary) = column.values else {
            panic!("a tag column")
        };
        assert_eq!(dictionary.values, vec!["a", "b"]);
        assert_eq!(dictionary.indices, vec![0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(column.present, Some(vec![1, 0, 1]));

        let ints = column_to_wit(&Column::dense("n", ColumnValues::Int(vec![-2, 258])));
        let types::ColumnValues::Int(bytes) = ints.values else {
            panic!("an int column")
        };
        assert_eq!(
            bytes,
            [(-2i64).to_le_bytes(), 258i64.to_le_bytes()].concat()
        );
    }
}
