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

/// A plugin's query result, built batch by batch as the query produces them, within a
/// bound on its size: a query whose result is over the bound stops at the first batch
/// that passes it, so the host never holds much more than the bound for a plugin.
///
/// The size counted is what the host holds for the plugin ([`row_bytes`](crate::sizes::row_bytes)),
/// read from a batch before it is converted.
pub struct ResultBuilder {
    columns: Vec<Column>,
    rows: usize,
    bytes: u64,
    limit_bytes: u64,
}

impl ResultBuilder {
    /// An empty result of `schema`'s columns, bounded to `limit_bytes`.
    ///
    /// # Errors
    ///
    /// A column of a type plugins cannot receive, named with its type.
    pub fn new(
        schema: &datafusion::arrow::datatypes::Schema,
        limit_bytes: u64,
    ) -> Result<Self, String> {
        let columns = schema
            .fields()
            .iter()
            .map(|field| {
                column(
                    field.name(),
                    &datafusion::arrow::array::new_empty_array(field.data_type()),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            columns,
            rows: 0,
            bytes: 0,
            limit_bytes,
        })
    }

    /// Adds the rows of `batch`, of the builder's schema.
    ///
    /// # Errors
    ///
    /// The result grew over its bound (`query result limit of … exceeded`), or past what
    /// a plugin can receive.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), String> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let weight = crate::sizes::row_bytes(batch)
            .into_iter()
            .fold(0_u64, u64::saturating_add);
        self.bytes = self.bytes.saturating_add(weight);
        if self.bytes > self.limit_bytes {
            return Err(format!(
                "query result limit of {} exceeded",
                sluice_plugin_api::size_text(self.limit_bytes)
            ));
        }
        for (index, accumulated) in self.columns.iter_mut().enumerate() {
            let chunk = column(accumulated.name.as_str(), batch.column(index))?;
            append(accumulated, chunk, self.rows);
        }
        self.rows += batch.num_rows();
        if u32::try_from(self.rows).is_err() {
            return Err(format!(
                "the result has {} rows, more than a plugin can receive",
                self.rows
            ));
        }
        Ok(())
    }

    /// The rows added so far.
    pub fn finish(self) -> QueryResult {
        QueryResult {
            row_count: u32::try_from(self.rows).unwrap_or(u32::MAX),
            columns: self.columns,
        }
    }
}

/// Appends `chunk`'s rows to `accumulated`, which holds `rows` rows.
fn append(accumulated: &mut Column, chunk: Column, rows: usize) {
    match (&mut accumulated.values, chunk.values) {
        (ColumnValues::Tag(to), ColumnValues::Tag(from))
        | (ColumnValues::String(to), ColumnValues::String(from)) => to.extend(from),
        (ColumnValues::Int(to), ColumnValues::Int(from))
        | (ColumnValues::Time(to), ColumnValues::Time(from)) => to.extend(from),
        (ColumnValues::UInt(to), ColumnValues::UInt(from)) => to.extend(from),
        (ColumnValues::Float(to), ColumnValues::Float(from)) => to.extend(from),
        (ColumnValues::Boolean(to), ColumnValues::Boolean(from)) => to.extend(from),
        // A column's type is its schema's, in every batch.
        _ => {}
    }
    match (&mut accumulated.present, chunk.present) {
        (Some(present), Some(more)) => present.extend(more),
        (Some(present), None) => present.resize(accumulated.values.len(), true),
        (None, Some(more)) => {
            let mut present = vec![true; rows];
            present.extend(more);
            accumulated.present = Some(present);
        }
        (None, None) => {}
    }
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

    fn result(
        schema: &Schema,
        batches: &[RecordBatch],
        limit_bytes: u64,
    ) -> Result<QueryResult, String> {
        let mut builder = ResultBuilder::new(schema, limit_bytes)?;
        for batch in batches {
            builder.push(batch)?;
        }
        Ok(builder.finish())
    }

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
        let result = result(&schema, &[rows.clone(), rows], u64::MAX).expect("maps");
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
            result(&schema, &[rows], u64::MAX).expect_err("unsupported"),
            "Unsupported data type: Date32"
        );
        let (schema, _) = batch(vec![("day", Arc::new(Date32Array::from(vec![1])))]);
        assert_eq!(
            result(&schema, &[], u64::MAX).map(|r| r.row_count),
            Err("Unsupported data type: Date32".into())
        );
    }

    #[test]
    fn a_result_stops_at_the_batch_that_passes_its_bound() {
        let (schema, rows) = batch(vec![
            ("name", Arc::new(StringArray::from(vec!["abcd", "efgh"]))),
            ("n", Arc::new(Int32Array::from(vec![Some(1), None]))),
        ]);
        // Per batch: 2 × (4 + 32) for the strings, 2 × (8 + 1) for the numbers, which
        // have a missing value.
        let per_batch = 72 + 18;
        let fits = result(&schema, &[rows.clone(), rows.clone()], 2 * per_batch).expect("fits");
        assert_eq!(fits.row_count, 4);
        assert_eq!(
            fits.columns[1].present,
            Some(vec![true, false, true, false])
        );
        assert_eq!(
            result(&schema, &[rows.clone(), rows.clone(), rows], 2 * per_batch).expect_err("over"),
            "query result limit of 180 bytes exceeded"
        );
    }

    #[test]
    fn presence_flags_start_where_the_first_missing_value_is() {
        let (schema, dense) = batch(vec![("n", Arc::new(Int32Array::from(vec![Some(1)])))]);
        let sparse = RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![Arc::new(Int32Array::from(vec![None, Some(3)]))],
        )
        .expect("batch");
        let built = result(&schema, &[dense.clone(), sparse, dense], u64::MAX).expect("fits");
        assert_eq!(
            built.columns[0].present,
            Some(vec![true, false, true, true])
        );
        assert_eq!(built.row_count, 4);
    }
}
