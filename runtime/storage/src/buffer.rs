//! Rows in memory as Arrow columns, per database and table.
//!
//! A table appends into builders; every [`CHUNK_ROWS`] rows the builders are frozen into
//! a `RecordBatch`, so a query copies at most one chunk. Columns that appear later are
//! absent (null) in older chunks; [`Buffer::table_batches`] pads them to the table's
//! current schema.

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, StringDictionaryBuilder,
    TimestampNanosecondBuilder, UInt64Builder, new_null_array,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use sluice_catalog::ColumnType;
use sluice_lp::{FieldValue, Line};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Rows per frozen chunk.
pub const CHUNK_ROWS: usize = 65_536;

/// The Arrow type of a column of `column_type`.
pub fn arrow_type(column_type: ColumnType) -> DataType {
    match column_type {
        ColumnType::Tag => DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        ColumnType::Time => DataType::Timestamp(TimeUnit::Nanosecond, None),
        ColumnType::String => DataType::Utf8,
        ColumnType::Int => DataType::Int64,
        ColumnType::UInt => DataType::UInt64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
    }
}

/// The Arrow schema of a table with these columns; only `time` is non-nullable.
pub fn arrow_schema(columns: &[(String, ColumnType)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, t)| Field::new(name, arrow_type(*t), *t != ColumnType::Time))
            .collect::<Vec<_>>(),
    ))
}

enum Builder {
    Tag(StringDictionaryBuilder<Int32Type>),
    Time(TimestampNanosecondBuilder),
    String(StringBuilder),
    Int(Int64Builder),
    UInt(UInt64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
}

impl Builder {
    fn new(column_type: ColumnType) -> Self {
        match column_type {
            ColumnType::Tag => Self::Tag(StringDictionaryBuilder::new()),
            ColumnType::Time => Self::Time(TimestampNanosecondBuilder::new()),
            ColumnType::String => Self::String(StringBuilder::new()),
            ColumnType::Int => Self::Int(Int64Builder::new()),
            ColumnType::UInt => Self::UInt(UInt64Builder::new()),
            ColumnType::Float => Self::Float(Float64Builder::new()),
            ColumnType::Bool => Self::Bool(BooleanBuilder::new()),
        }
    }

    fn append_nulls(&mut self, n: usize) {
        match self {
            Self::Tag(b) => b.append_nulls(n),
            Self::Time(b) => b.append_nulls(n),
            Self::String(b) => (0..n).for_each(|_| b.append_null()),
            Self::Int(b) => b.append_nulls(n),
            Self::UInt(b) => b.append_nulls(n),
            Self::Float(b) => b.append_nulls(n),
            Self::Bool(b) => b.append_nulls(n),
        }
    }

    /// Appends `value`; false when its type does not fit (the catalog prevents this).
    fn append_field(&mut self, value: &FieldValue) -> bool {
        match (self, value) {
            (Self::String(b), FieldValue::String(v)) => b.append_value(v),
            (Self::Int(b), FieldValue::I64(v)) => b.append_value(*v),
            (Self::UInt(b), FieldValue::U64(v)) => b.append_value(*v),
            (Self::Float(b), FieldValue::F64(v)) => b.append_value(*v),
            (Self::Bool(b), FieldValue::Bool(v)) => b.append_value(*v),
            _ => return false,
        }
        true
    }

    fn finish(&mut self, cloned: bool) -> ArrayRef {
        macro_rules! done {
            ($b:expr) => {
                if cloned { Arc::new($b.finish_cloned()) as ArrayRef } else { Arc::new($b.finish()) as ArrayRef }
            };
        }
        match self {
            Self::Tag(b) => done!(b),
            Self::Time(b) => done!(b),
            Self::String(b) => done!(b),
            Self::Int(b) => done!(b),
            Self::UInt(b) => done!(b),
            Self::Float(b) => done!(b),
            Self::Bool(b) => done!(b),
        }
    }
}

/// One table's rows.
#[derive(Default)]
struct TableBuffer {
    columns: Vec<(String, ColumnType)>,
    builders: Vec<Builder>,
    positions: HashMap<String, usize>,
    active_rows: usize,
    frozen: Vec<RecordBatch>,
}

impl TableBuffer {
    fn column(&mut self, name: &str, column_type: ColumnType) -> usize {
        if let Some(&index) = self.positions.get(name) {
            return index;
        }
        let mut builder = Builder::new(column_type);
        builder.append_nulls(self.active_rows);
        self.columns.push((name.to_string(), column_type));
        self.builders.push(builder);
        self.positions.insert(name.to_string(), self.builders.len() - 1);
        self.builders.len() - 1
    }

    fn append(&mut self, line: &Line) {
        let time = self.column("time", ColumnType::Time);
        let mut filled = vec![false; self.builders.len()];
        for (key, value) in &line.tags {
            let index = self.column(key, ColumnType::Tag);
            filled.resize(self.builders.len(), false);
            if let Builder::Tag(b) = &mut self.builders[index] {
                b.append_value(value);
                filled[index] = true;
            }
        }
        for (key, value) in &line.fields {
            let index = self.column(key, field_type(value));
            filled.resize(self.builders.len(), false);
            if !filled[index] && self.builders[index].append_field(value) {
                filled[index] = true;
            }
        }
        if let Builder::Time(b) = &mut self.builders[time] {
            b.append_value(line.time_ns);
            filled[time] = true;
        }
        for (builder, done) in self.builders.iter_mut().zip(filled) {
            if !done {
                builder.append_nulls(1);
            }
        }
        self.active_rows += 1;
        if self.active_rows >= CHUNK_ROWS {
            let batch = self.batch(false);
            self.frozen.push(batch);
            self.active_rows = 0;
        }
    }

    /// Column positions in schema order: tags, then fields, then `time`, each group in
    /// first-seen order.
    fn order(&self) -> Vec<usize> {
        let rank = |t: ColumnType| match t {
            ColumnType::Tag => 0,
            ColumnType::Time => 2,
            _ => 1,
        };
        let mut order: Vec<usize> = (0..self.columns.len()).collect();
        order.sort_by_key(|&i| rank(self.columns[i].1));
        order
    }

    fn schema(&self) -> SchemaRef {
        let ordered: Vec<(String, ColumnType)> = self.order().into_iter().map(|i| self.columns[i].clone()).collect();
        arrow_schema(&ordered)
    }

    fn batch(&mut self, cloned: bool) -> RecordBatch {
        let mut arrays: Vec<Option<ArrayRef>> = self.builders.iter_mut().map(|b| Some(b.finish(cloned))).collect();
        let ordered: Vec<ArrayRef> = self.order().into_iter().filter_map(|i| arrays[i].take()).collect();
        RecordBatch::try_new(self.schema(), ordered).unwrap_or_else(|_| RecordBatch::new_empty(self.schema()))
    }

    /// Every chunk, padded to the current schema.
    fn batches(&mut self) -> Vec<RecordBatch> {
        let schema = self.schema();
        let mut out: Vec<RecordBatch> = self.frozen.iter().map(|b| pad(b, &schema)).collect();
        if self.active_rows > 0 {
            out.push(self.batch(true));
        }
        out
    }
}

fn field_type(value: &FieldValue) -> ColumnType {
    match value {
        FieldValue::I64(_) => ColumnType::Int,
        FieldValue::U64(_) => ColumnType::UInt,
        FieldValue::F64(_) => ColumnType::Float,
        FieldValue::String(_) => ColumnType::String,
        FieldValue::Bool(_) => ColumnType::Bool,
    }
}

/// `batch` with null columns added for the columns of `schema` it lacks.
fn pad(batch: &RecordBatch, schema: &SchemaRef) -> RecordBatch {
    if batch.schema().fields().len() == schema.fields().len() {
        return batch.clone();
    }
    let arrays: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(array) => Arc::clone(array),
            None => new_null_array(field.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(Arc::clone(schema), arrays).unwrap_or_else(|_| RecordBatch::new_empty(Arc::clone(schema)))
}

/// All tables of all databases.
#[derive(Default)]
pub struct Buffer {
    tables: BTreeMap<(String, String), TableBuffer>,
}

impl Buffer {
    /// Appends validated lines of `database`.
    pub fn append(&mut self, database: &str, lines: &[Line]) {
        for line in lines {
            self.tables.entry((database.to_string(), line.table.clone())).or_default().append(line);
        }
    }

    /// The schema and rows of a table, if it has rows.
    pub fn table_batches(&mut self, database: &str, table: &str) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        let buffer = self.tables.get_mut(&(database.to_string(), table.to_string()))?;
        Some((buffer.schema(), buffer.batches()))
    }

    /// Forgets a database's rows.
    pub fn drop_database(&mut self, database: &str) {
        self.tables.retain(|(db, _), _| db != database);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;
    use sluice_lp::{Precision, parse};

    #[test]
    fn rows_become_typed_columns_and_late_columns_are_null_before() {
        let mut buffer = Buffer::default();
        let lines = parse("cpu,host=a usage=1i 1\ncpu,host=b usage=2i,idle=0.5 2", Precision::Nanosecond, 0).lines;
        buffer.append("db", &lines);
        let (schema, batches) = buffer.table_batches("db", "cpu").expect("a table");
        let types: Vec<(&str, &DataType)> = schema.fields().iter().map(|f| (f.name().as_str(), f.data_type())).collect();
        assert_eq!(
            types,
            [
                ("host", &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))),
                ("usage", &DataType::Int64),
                ("idle", &DataType::Float64),
                ("time", &DataType::Timestamp(TimeUnit::Nanosecond, None)),
            ]
        );
        assert_eq!(batches.len(), 1);
        let idle = batches[0].column_by_name("idle").expect("idle");
        assert!(idle.is_null(0) && !idle.is_null(1));
        assert_eq!(batches[0].column_by_name("usage").expect("usage").as_primitive::<Int64Type>().values(), &[1, 2]);
    }

    #[test]
    fn full_chunks_freeze_and_older_chunks_are_padded() {
        let mut buffer = Buffer::default();
        let body: String = (0..CHUNK_ROWS).map(|i| format!("m f={i}i {i}\n")).collect();
        buffer.append("db", &parse(&body, Precision::Nanosecond, 0).lines);
        buffer.append("db", &parse("m f=1i,g=true 9", Precision::Nanosecond, 0).lines);
        let (schema, batches) = buffer.table_batches("db", "m").expect("a table");
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].num_rows(), CHUNK_ROWS);
        assert_eq!(batches[0].schema(), schema);
        assert_eq!(batches[0].column_by_name("g").expect("padded").null_count(), CHUNK_ROWS);
        assert_eq!(batches[1].num_rows(), 1);
    }
}
