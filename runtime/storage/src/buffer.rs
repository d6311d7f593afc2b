//! Rows in memory as Arrow columns, per database and table, and the Parquet files that
//! hold the rows already persisted.
//!
//! A table appends into builders; every [`CHUNK_ROWS`] rows the builders are frozen into
//! a `RecordBatch`, so a query copies at most one chunk. Columns that appear later are
//! absent (null) in older chunks; [`Buffer::table_data`] pads them to the table's
//! current schema.
//!
//! A snapshot [freezes](Buffer::freeze) every table; the frozen chunks stay queryable
//! until their Parquet files are [registered](Buffer::persisted), which swaps chunks for
//! files in one step, so a query sees each row exactly once.

use crate::persist::ParquetFile;
use crate::points::{PointSpan, PointWatch};
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
        ColumnType::Tag => {
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
        }
        ColumnType::Time => DataType::Timestamp(TimeUnit::Nanosecond, None),
        ColumnType::String => DataType::Utf8,
        ColumnType::Int => DataType::Int64,
        ColumnType::UInt => DataType::UInt64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
    }
}

/// Where a column of `column_type` goes in a table's schema: tags, then fields, then time.
fn rank(column_type: ColumnType) -> u8 {
    match column_type {
        ColumnType::Tag => 0,
        ColumnType::Time => 2,
        _ => 1,
    }
}

/// The Arrow schema of a table with these columns: tags, then fields, then `time`, each
/// group in the given order. Only `time` is non-nullable.
pub fn arrow_schema(columns: &[(String, ColumnType)]) -> SchemaRef {
    let mut ordered: Vec<&(String, ColumnType)> = columns.iter().collect();
    ordered.sort_by_key(|(_, t)| rank(*t));
    Arc::new(Schema::new(
        ordered
            .into_iter()
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

    fn len(&self) -> usize {
        use arrow::array::ArrayBuilder;
        match self {
            Self::Tag(b) => b.len(),
            Self::Time(b) => b.len(),
            Self::String(b) => b.len(),
            Self::Int(b) => b.len(),
            Self::UInt(b) => b.len(),
            Self::Float(b) => b.len(),
            Self::Bool(b) => b.len(),
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

    /// Appends `value`; a value of another type is skipped, so the row gets a null
    /// (the catalog refuses such lines before they get here).
    fn append_field(&mut self, value: &FieldValue) {
        match (self, value) {
            (Self::String(b), FieldValue::String(v)) => b.append_value(v),
            (Self::Int(b), FieldValue::I64(v)) => b.append_value(*v),
            (Self::UInt(b), FieldValue::U64(v)) => b.append_value(*v),
            (Self::Float(b), FieldValue::F64(v)) => b.append_value(*v),
            (Self::Bool(b), FieldValue::Bool(v)) => b.append_value(*v),
            _ => {}
        }
    }

    fn finish(&mut self, cloned: bool) -> ArrayRef {
        macro_rules! done {
            ($b:expr) => {
                if cloned {
                    Arc::new($b.finish_cloned()) as ArrayRef
                } else {
                    Arc::new($b.finish()) as ArrayRef
                }
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
    /// The snapshot that is persisting the first `n` frozen chunks: (snapshot id, n).
    persisting: Option<(u64, usize)>,
    /// The memory of the frozen chunks.
    frozen_bytes: usize,
    /// Bytes of text (tags, strings) in the active rows.
    active_text_bytes: usize,
    /// Whether the rows may repeat a point, and their time range.
    points: PointWatch,
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
        self.positions
            .insert(name.to_string(), self.builders.len() - 1);
        self.builders.len() - 1
    }

    fn append(&mut self, line: &Line) {
        // A builder that already holds `active_rows + 1` values got this line's value;
        // the others get a null at the end.
        let rows = self.active_rows;
        let time = self.column("time", ColumnType::Time);
        for (key, value) in &line.tags {
            self.active_text_bytes += value.len();
            let index = self.column(key, ColumnType::Tag);
            if let Builder::Tag(b) = &mut self.builders[index]
                && arrow::array::ArrayBuilder::len(b) == rows
            {
                b.append_value(value);
            }
        }
        for (key, value) in &line.fields {
            if let FieldValue::String(text) = value {
                self.active_text_bytes += text.len();
            }
            let index = self.column(key, field_type(value));
            if self.builders[index].len() == rows {
                self.builders[index].append_field(value);
            }
        }
        if let Builder::Time(b) = &mut self.builders[time] {
            b.append_value(line.time_ns);
        }
        self.points.note(line);
        for builder in &mut self.builders {
            if builder.len() == rows {
                builder.append_nulls(1);
            }
        }
        self.active_rows += 1;
        if self.active_rows >= CHUNK_ROWS {
            self.freeze_active();
        }
    }

    /// Makes the active rows a frozen chunk.
    fn freeze_active(&mut self) {
        let batch = self.batch(false);
        self.frozen_bytes += batch.get_array_memory_size();
        self.frozen.push(batch);
        self.active_rows = 0;
        self.active_text_bytes = 0;
    }

    /// The memory the table's rows take: the frozen chunks', and an estimate of the
    /// active rows' (8 bytes a value, nulls included, and their text).
    fn bytes(&self) -> usize {
        self.frozen_bytes
            + self.active_rows * 8 * self.builders.len()
            + self.active_text_bytes
            + self.points.bytes()
    }

    /// Column positions in schema order: tags, then fields, then `time`, each group in
    /// first-seen order.
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.columns.len()).collect();
        order.sort_by_key(|&i| rank(self.columns[i].1));
        order
    }

    fn schema(&self) -> SchemaRef {
        arrow_schema(&self.columns)
    }

    fn rows(&self) -> usize {
        self.frozen.iter().map(RecordBatch::num_rows).sum::<usize>() + self.active_rows
    }

    /// Freezes the active rows too, and marks every frozen chunk as persisting in
    /// snapshot `id`; returns them padded to the current schema, and whether no two of
    /// their rows are one point.
    fn freeze(&mut self, id: u64) -> (SchemaRef, Vec<RecordBatch>, bool) {
        if self.active_rows > 0 {
            self.freeze_active();
        }
        self.persisting = Some((id, self.frozen.len()));
        let unique = self.points.unique();
        self.points.freeze();
        let schema = self.schema();
        let batches = self.frozen.iter().map(|b| pad(b, &schema)).collect();
        (schema, batches, unique)
    }

    /// Snapshot `persisting` gave up on the chunks it froze.
    fn abandon(&mut self) {
        self.persisting = None;
        self.points.abandoned();
    }

    fn batch(&mut self, cloned: bool) -> RecordBatch {
        let mut arrays: Vec<Option<ArrayRef>> = self
            .builders
            .iter_mut()
            .map(|b| Some(b.finish(cloned)))
            .collect();
        let ordered: Vec<ArrayRef> = self
            .order()
            .into_iter()
            .filter_map(|i| arrays[i].take())
            .collect();
        RecordBatch::try_new(self.schema(), ordered)
            .unwrap_or_else(|_| RecordBatch::new_empty(self.schema()))
    }

    /// Every chunk, padded to `schema` (a superset of the buffer's columns).
    fn batches(&mut self, schema: &SchemaRef) -> Vec<RecordBatch> {
        let mut out: Vec<RecordBatch> = self.frozen.iter().map(|b| pad(b, schema)).collect();
        if self.active_rows > 0 {
            let active = self.batch(true);
            out.push(pad(&active, schema));
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

/// `batch` with its columns in the order of `schema`, and null columns added for the
/// columns of `schema` it lacks.
fn pad(batch: &RecordBatch, schema: &SchemaRef) -> RecordBatch {
    if batch.schema() == *schema {
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
    RecordBatch::try_new(Arc::clone(schema), arrays)
        .unwrap_or_else(|_| RecordBatch::new_empty(Arc::clone(schema)))
}

/// A table's rows: in memory and in Parquet files, each row in exactly one of them.
#[derive(Debug, Clone)]
pub struct TableData {
    /// The table's schema; every batch has it, Parquet files may lack later columns.
    pub schema: SchemaRef,
    /// Rows in memory.
    pub batches: Vec<RecordBatch>,
    /// Parquet files with the persisted rows, oldest first.
    pub files: Vec<ParquetFile>,
    /// The rows in memory, hour by hour: their time ranges, and where two of them may
    /// be one point.
    pub buffered: Vec<PointSpan>,
}

/// One table frozen by a snapshot.
#[derive(Debug, Clone)]
pub struct FrozenTable {
    /// Database name.
    pub database: String,
    /// Table name.
    pub table: String,
    /// The table's schema at the snapshot.
    pub schema: SchemaRef,
    /// Its rows.
    pub batches: Vec<RecordBatch>,
    /// No two of the rows are one point.
    pub unique: bool,
}

/// All tables of all databases.
#[derive(Default)]
pub struct Buffer {
    tables: BTreeMap<(String, String), TableBuffer>,
    files: BTreeMap<(String, String), Vec<ParquetFile>>,
    rows: usize,
    /// The sum of the tables' [`TableBuffer::bytes`], kept as rows come and go, so
    /// that a write asks for it without visiting every table.
    bytes: usize,
}

impl Buffer {
    /// Appends validated lines of `database`.
    pub fn append(&mut self, database: &str, lines: &[Line]) {
        // One table lookup per run of lines of the same table.
        for run in lines.chunk_by(|a, b| a.table == b.table) {
            let table = self
                .tables
                .entry((database.to_string(), run[0].table.clone()))
                .or_default();
            let before = table.bytes();
            for line in run {
                table.append(line);
            }
            self.bytes = self.bytes - before + table.bytes();
        }
        self.rows += lines.len();
    }

    /// Rows in memory.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The memory the rows take, as [`TableBuffer::bytes`] estimates it.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Counts [`Self::bytes`] again, after a change to many tables.
    fn recount(&mut self) {
        self.bytes = self.tables.values().map(TableBuffer::bytes).sum();
    }

    /// Adds Parquet files found at start-up.
    pub fn add_files(&mut self, files: impl IntoIterator<Item = ParquetFile>) {
        for file in files {
            self.files
                .entry((file.database.clone(), file.table.clone()))
                .or_default()
                .push(file);
        }
    }

    /// Every Parquet file queries read.
    pub fn files(&self) -> impl Iterator<Item = &ParquetFile> {
        self.files.values().flatten()
    }

    /// A table's rows in memory (padded to `schema`) and its Parquet files.
    pub fn table_data(&mut self, database: &str, table: &str, schema: SchemaRef) -> TableData {
        let key = (database.to_string(), table.to_string());
        let (batches, buffered) = self
            .tables
            .get_mut(&key)
            .map(|t| (t.batches(&schema), t.points.spans()))
            .unwrap_or_default();
        let files = self.files.get(&key).cloned().unwrap_or_default();
        TableData {
            schema,
            batches,
            files,
            buffered,
        }
    }

    /// Freezes every table with rows for snapshot `id`; the rows stay queryable here
    /// until [`Buffer::persisted`] or [`Buffer::abandon`] with the same `id`.
    pub fn freeze(&mut self, id: u64) -> Vec<FrozenTable> {
        let frozen = self
            .tables
            .iter_mut()
            .filter(|(_, t)| t.rows() > 0)
            .map(|((database, table), buffer)| {
                let (schema, batches, unique) = buffer.freeze(id);
                FrozenTable {
                    database: database.clone(),
                    table: table.clone(),
                    schema,
                    batches,
                    unique,
                }
            })
            .collect();
        self.recount();
        frozen
    }

    /// Swaps the chunks frozen by snapshot `id` for the files that now hold them. Files
    /// of tables dropped meanwhile are ignored (and returned, to be deleted).
    pub fn persisted(&mut self, id: u64, files: Vec<ParquetFile>) -> Vec<ParquetFile> {
        let mut orphans = Vec::new();
        for file in files {
            let key = (file.database.clone(), file.table.clone());
            match self.tables.get_mut(&key) {
                Some(buffer)
                    if buffer
                        .persisting
                        .is_some_and(|(snapshot, _)| snapshot == id) =>
                {
                    self.files.entry(key).or_default().push(file);
                }
                _ => orphans.push(file),
            }
        }
        for buffer in self.tables.values_mut() {
            if let Some((snapshot, chunks)) = buffer.persisting
                && snapshot == id
            {
                let (mut released, mut bytes) = (0, 0);
                for chunk in buffer.frozen.drain(..chunks) {
                    released += chunk.num_rows();
                    bytes += chunk.get_array_memory_size();
                }
                self.rows -= released;
                buffer.frozen_bytes -= bytes;
                buffer.persisting = None;
                buffer.points.persisted();
            }
        }
        self.tables
            .retain(|_, t| t.rows() > 0 || t.persisting.is_some());
        self.recount();
        orphans
    }

    /// Forgets snapshot `id`: its chunks stay in memory for the next one.
    pub fn abandon(&mut self, id: u64) {
        for buffer in self.tables.values_mut() {
            if buffer
                .persisting
                .is_some_and(|(snapshot, _)| snapshot == id)
            {
                buffer.abandon();
            }
        }
        self.recount();
    }

    /// Gives the frozen chunks of `tables` (database, table), which snapshot `id` could
    /// not write, back to the buffer: the next snapshot takes them again.
    pub fn abandon_tables(&mut self, id: u64, tables: &[(String, String)]) {
        for key in tables {
            if let Some(buffer) = self.tables.get_mut(key)
                && buffer
                    .persisting
                    .is_some_and(|(snapshot, _)| snapshot == id)
            {
                buffer.abandon();
            }
        }
        self.recount();
    }

    /// Forgets a database's rows and files; returns the files, to be deleted.
    pub fn drop_database(&mut self, database: &str) -> Vec<ParquetFile> {
        self.tables.retain(|(db, _), t| {
            let keep = db != database;
            if !keep {
                self.rows -= t.rows();
            }
            keep
        });
        self.recount();
        let mut dropped = Vec::new();
        self.files.retain(|(db, _), files| {
            if db == database {
                dropped.append(files);
                return false;
            }
            true
        });
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;
    use sluice_lp::{Precision, parse};

    /// The table's rows with the buffer's own schema for it.
    fn own(buffer: &mut Buffer, db: &str, table: &str) -> (SchemaRef, Vec<RecordBatch>) {
        let schema = buffer.tables[&(db.to_string(), table.to_string())].schema();
        let data = buffer.table_data(db, table, schema);
        (data.schema, data.batches)
    }

    fn file(table: &str) -> ParquetFile {
        ParquetFile {
            database: "db".into(),
            table: table.into(),
            path: format!("{table}.parquet"),
            ..ParquetFile::default()
        }
    }

    #[test]
    fn persisted_rows_move_from_chunks_to_files_and_later_rows_stay() {
        let mut buffer = Buffer::default();
        buffer.append(
            "db",
            &parse("m f=1i 1\nm f=2i 2\nn g=1i 1", Precision::Nanosecond, 0).lines,
        );
        let frozen = buffer.freeze(7);
        assert_eq!(
            frozen
                .iter()
                .map(|t| t.batches.iter().map(RecordBatch::num_rows).sum::<usize>())
                .sum::<usize>(),
            3
        );
        buffer.append("db", &parse("m f=3i 3", Precision::Nanosecond, 0).lines);
        assert_eq!(
            own(&mut buffer, "db", "m")
                .1
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>(),
            3,
            "frozen rows stay queryable"
        );

        let orphans = buffer.persisted(7, vec![file("m"), file("n"), file("gone")]);
        assert_eq!(orphans.len(), 1, "a table that is not frozen gets no file");
        assert_eq!(buffer.rows(), 1);
        let schema = arrow_schema(&[
            ("f".into(), ColumnType::Int),
            ("time".into(), ColumnType::Time),
        ]);
        let m = buffer.table_data("db", "m", schema.clone());
        assert_eq!(
            (
                m.files.len(),
                m.batches.iter().map(RecordBatch::num_rows).sum::<usize>()
            ),
            (1, 1)
        );
        let n = buffer.table_data("db", "n", schema);
        assert_eq!((n.files.len(), n.batches.len()), (1, 0));
    }

    #[test]
    fn an_abandoned_snapshot_keeps_its_rows_and_a_stale_id_changes_nothing() {
        let mut buffer = Buffer::default();
        buffer.append("db", &parse("m f=1i 1", Precision::Nanosecond, 0).lines);
        buffer.freeze(1);
        buffer.abandon(1);
        assert_eq!(buffer.persisted(1, vec![file("m")]).len(), 1);
        assert_eq!(buffer.rows(), 1);
        assert_eq!(buffer.drop_database("db").len(), 0);
        assert_eq!(buffer.rows(), 0);
    }

    #[test]
    fn rows_become_typed_columns_and_late_columns_are_null_before() {
        let mut buffer = Buffer::default();
        let lines = parse(
            "cpu,host=a usage=1i 1\ncpu,host=b usage=2i,idle=0.5 2",
            Precision::Nanosecond,
            0,
        )
        .lines;
        buffer.append("db", &lines);
        let (schema, batches) = own(&mut buffer, "db", "cpu");
        let types: Vec<(&str, &DataType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        assert_eq!(
            types,
            [
                (
                    "host",
                    &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
                ),
                ("usage", &DataType::Int64),
                ("idle", &DataType::Float64),
                ("time", &DataType::Timestamp(TimeUnit::Nanosecond, None)),
            ]
        );
        assert_eq!(batches.len(), 1);
        let idle = batches[0].column_by_name("idle").expect("idle");
        assert!(idle.is_null(0) && !idle.is_null(1));
        assert_eq!(
            batches[0]
                .column_by_name("usage")
                .expect("usage")
                .as_primitive::<Int64Type>()
                .values(),
            &[1, 2]
        );
    }

    #[test]
    fn full_chunks_freeze_and_older_chunks_are_padded() {
        let mut buffer = Buffer::default();
        let body: String = (0..CHUNK_ROWS).map(|i| format!("m f={i}i {i}\n")).collect();
        buffer.append("db", &parse(&body, Precision::Nanosecond, 0).lines);
        buffer.append(
            "db",
            &parse("m f=1i,g=true 9", Precision::Nanosecond, 0).lines,
        );
        let (schema, batches) = own(&mut buffer, "db", "m");
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].num_rows(), CHUNK_ROWS);
        assert_eq!(batches[0].schema(), schema);
        assert_eq!(
            batches[0].column_by_name("g").expect("padded").null_count(),
            CHUNK_ROWS
        );
        assert_eq!(batches[1].num_rows(), 1);
    }
}
