//! Query results as plugins receive them: columns of the plugin API's value types, with
//! upstream's type mapping (tags and strings as text, integers, floats, booleans,
//! timestamps as nanoseconds). Other Arrow types are converted where the conversion keeps
//! the value (narrower integers, `Float32`, other timestamp units, string views);
//! anything else is an error the plugin sees as `QueryError`, never a panic.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Float64Type, Int64Type, TimeUnit, TimestampNanosecondType, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use sluice_plugin_api::{Column, ColumnValues, QueryResult};

/// The rows of `batches` (all of `schema`'s shape) as a plugin query result.
///
/// # Errors
///
/// A column of a type plugins cannot receive, named with its type.
pub fn query_result(
    schema: &datafusion::arrow::datatypes::Schema,
    batches: &[RecordBatch],
) -> Result<QueryResult, String> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (index, field) in schema.fields().iter().enumerate() {
        let arrays: Vec<ArrayRef> = batches.iter().map(|b| b.column(index).clone()).collect();
        let array = match arrays.len() {
            0 => datafusion::arrow::array::new_empty_array(field.data_type()),
            1 => arrays[0].clone(),
            _ => {
                let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
                datafusion::arrow::compute::concat(&refs).map_err(|e| e.to_string())?
            }
        };
        columns.push(column(field.name(), &array)?);
    }
    let row_count = batches.iter().map(RecordBatch::num_rows).sum::<usize>();
    let row_count = u32::try_from(row_count)
        .map_err(|_| format!("the result has {row_count} rows, more than a plugin can receive"))?;
    Ok(QueryResult { row_count, columns })
}

fn converted(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, String> {
    cast(array, to).map_err(|e| format!("Unsupported data type: {:?} ({e})", array.data_type()))
}

fn column(name: &str, array: &ArrayRef) -> Result<Column, String> {
    let present =
        (array.null_count() > 0).then(|| (0..array.len()).map(|i| array.is_valid(i)).collect());
    let strings = |array: &ArrayRef| -> Result<Vec<String>, String> {
        let utf8 = converted(array, &DataType::Utf8)?;
        Ok(utf8
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    };
    let values = match array.data_type() {
        DataType::Dictionary(_, _) => ColumnValues::Tag(strings(array)?),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            ColumnValues::String(strings(array)?)
        }
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => ColumnValues::Int(
            converted(array, &DataType::Int64)?
                .as_primitive::<Int64Type>()
                .values()
                .to_vec(),
        ),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            ColumnValues::UInt(
                converted(array, &DataType::UInt64)?
                    .as_primitive::<UInt64Type>()
                    .values()
                    .to_vec(),
            )
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnValues::Float(
            converted(array, &DataType::Float64)?
                .as_primitive::<Float64Type>()
                .values()
                .to_vec(),
        ),
        DataType::Boolean => ColumnValues::Boolean(
            array
                .as_boolean()
                .iter()
                .map(|v| v.unwrap_or_default())
                .collect(),
        ),
        DataType::Timestamp(_, _) => {
            let nanos = converted(array, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
            ColumnValues::Time(
                nanos
                    .as_primitive::<TimestampNanosecondType>()
                    .values()
                    .to_vec(),
            )
        }
        other => return Err(format!("Unsupported data type: {other:?}")),
    };
    Ok(Column {
        name: name.to_string(),
        values,
        present,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        BooleanArray, Date32Array, DictionaryArray, Float32Array, Int32Array, StringArray,
        TimestampMillisecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Int32Type, Schema};
    use std::sync::Arc;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> (Schema, RecordBatch) {
        let schema = Schema::new(
            columns
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        let batch = RecordBatch::try_new(
            Arc::new(schema.clone()),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .expect("batch");
        (schema, batch)
    }

    #[test]
    fn arrow_types_map_to_plugin_values() {
        let tags: DictionaryArray<Int32Type> = vec!["a", "b"].into_iter().collect();
        let (schema, rows) = batch(vec![
            ("host", Arc::new(tags)),
            ("small", Arc::new(Int32Array::from(vec![1, -2]))),
            ("ratio", Arc::new(Float32Array::from(vec![0.5, 1.5]))),
            ("ok", Arc::new(BooleanArray::from(vec![Some(true), None]))),
            ("name", Arc::new(StringArray::from(vec!["x", "y"]))),
            ("at", Arc::new(TimestampMillisecondArray::from(vec![1, 2]))),
        ]);
        let result = query_result(&schema, &[rows.clone(), rows]).expect("maps");
        assert_eq!(result.row_count, 4);
        let values: Vec<&ColumnValues> = result.columns.iter().map(|c| &c.values).collect();
        assert_eq!(
            values[0],
            &ColumnValues::Tag(vec!["a".into(), "b".into(), "a".into(), "b".into()])
        );
        assert_eq!(values[1], &ColumnValues::Int(vec![1, -2, 1, -2]));
        assert_eq!(values[2], &ColumnValues::Float(vec![0.5, 1.5, 0.5, 1.5]));
        assert_eq!(
            result.columns[3].present,
            Some(vec![true, false, true, false])
        );
        assert_eq!(
            values[4],
            &ColumnValues::String(vec!["x".into(), "y".into(), "x".into(), "y".into()])
        );
        assert_eq!(
            values[5],
            &ColumnValues::Time(vec![1_000_000, 2_000_000, 1_000_000, 2_000_000])
        );
    }

    #[test]
    fn other_types_are_an_error_not_a_panic() {
        let (schema, rows) = batch(vec![("day", Arc::new(Date32Array::from(vec![1])))]);
        assert_eq!(
            query_result(&schema, &[rows]).expect_err("unsupported"),
            "Unsupported data type: Date32"
        );
        let (schema, _) = batch(vec![("day", Arc::new(Date32Array::from(vec![1])))]);
        assert_eq!(
            query_result(&schema, &[]).map(|r| r.row_count),
            Err("Unsupported data type: Date32".into())
        );
    }
}
