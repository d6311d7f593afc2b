//! Rows of line protocol → the per-table column batches a WAL plugin receives.
//!
//! Tables keep the order in which they first appear; within a table, columns are its
//! tags in first-seen order, then its fields in first-seen order, then `time`. A row
//! lacking a column is marked absent, so the plugin's row dict omits it, as upstream.

use sluice_lp::{FieldValue, Line};
use sluice_plugin_api::{Column, ColumnValues, TableBatch};
use std::collections::HashMap;

/// The batches, and the lines refused because a column changed type within them.
#[derive(Debug, Default)]
pub struct Batches {
    /// One batch per table.
    pub batches: Vec<TableBatch>,
    /// One message per refused line.
    pub errors: Vec<String>,
}

/// Groups `lines` into table batches.
pub fn table_batches<'a>(lines: impl IntoIterator<Item = &'a Line>) -> Batches {
    let mut order: Vec<TableBuilder> = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let mut errors = Vec::new();
    for line in lines {
        let index = *by_name.entry(&line.table).or_insert_with(|| {
            order.push(TableBuilder::new(&line.table));
            order.len() - 1
        });
        if let Err(message) = order[index].push(line) {
            errors.push(message);
        }
    }
    Batches {
        batches: order.into_iter().map(TableBuilder::finish).collect(),
        errors,
    }
}

struct Builder {
    name: String,
    values: ColumnValues,
    present: Vec<bool>,
}

impl Builder {
    fn new(name: &str, values: ColumnValues, rows_before: usize) -> Self {
        let mut builder = Self {
            name: name.to_string(),
            values,
            present: Vec::new(),
        };
        for _ in 0..rows_before {
            builder.push_absent();
        }
        builder
    }

    fn push_absent(&mut self) {
        match &mut self.values {
            ColumnValues::Tag(v) | ColumnValues::String(v) => v.push(String::new()),
            ColumnValues::Int(v) | ColumnValues::Time(v) => v.push(0),
            ColumnValues::UInt(v) => v.push(0),
            ColumnValues::Float(v) => v.push(0.0),
            ColumnValues::Boolean(v) => v.push(false),
        }
        self.present.push(false);
    }

    fn finish(self) -> Column {
        let present = (!self.present.iter().all(|p| *p)).then_some(self.present);
        Column {
            name: self.name,
            values: self.values,
            present,
        }
    }
}

fn empty_like(value: &FieldValue) -> ColumnValues {
    match value {
        FieldValue::I64(_) => ColumnValues::Int(Vec::new()),
        FieldValue::U64(_) => ColumnValues::UInt(Vec::new()),
        FieldValue::F64(_) => ColumnValues::Float(Vec::new()),
        FieldValue::String(_) => ColumnValues::String(Vec::new()),
        FieldValue::Bool(_) => ColumnValues::Boolean(Vec::new()),
    }
}

fn type_name(values: &ColumnValues) -> &'static str {
    match values {
        ColumnValues::Tag(_) => "tag",
        ColumnValues::String(_) => "string",
        ColumnValues::Int(_) => "integer",
        ColumnValues::UInt(_) => "unsigned integer",
        ColumnValues::Float(_) => "float",
        ColumnValues::Boolean(_) => "boolean",
        ColumnValues::Time(_) => "time",
    }
}

struct TableBuilder {
    name: String,
    rows: usize,
    tags: Vec<Builder>,
    fields: Vec<Builder>,
    times: Vec<i64>,
    /// Column name → (is a tag, index in `tags` or `fields`).
    columns: HashMap<String, (bool, usize)>,
}

impl TableBuilder {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            rows: 0,
            tags: Vec::new(),
            fields: Vec::new(),
            times: Vec::new(),
            columns: HashMap::new(),
        }
    }

    /// Refuses a line whose columns conflict with the table so far; else appends it.
    fn check(&self, line: &Line) -> Result<(), String> {
        let conflict = |name: &str, expected: &str, got: &str| {
            Err(format!(
                "column '{name}' of table '{}' is a {expected}, but the line gives a {got}",
                self.name
            ))
        };
        for (key, _) in &line.tags {
            if let Some((false, i)) = self.columns.get(key) {
                return conflict(key, type_name(&self.fields[*i].values), "tag");
            }
        }
        for (key, value) in &line.fields {
            let got = empty_like(value);
            match self.columns.get(key) {
                Some((true, _)) => return conflict(key, "tag", type_name(&got)),
                Some((false, i))
                    if std::mem::discriminant(&self.fields[*i].values)
                        != std::mem::discriminant(&got) =>
                {
                    return conflict(key, type_name(&self.fields[*i].values), type_name(&got));
                }
                _ => {}
            }
        }
        if key_is_time(line) {
            return Err(format!(
                "table '{}': `time` cannot be a tag or field name",
                self.name
            ));
        }
        Ok(())
    }

    fn push(&mut self, line: &Line) -> Result<(), String> {
        self.check(line)?;
        for (key, value) in &line.tags {
            let builder = self.column(key, true, || ColumnValues::Tag(Vec::new()));
            if let ColumnValues::Tag(values) = &mut builder.values {
                values.push(value.clone());
                builder.present.push(true);
            }
        }
        for (key, value) in &line.fields {
            let builder = self.column(key, false, || empty_like(value));
            match (&mut builder.values, value) {
                (ColumnValues::Int(v), FieldValue::I64(x)) => v.push(*x),
                (ColumnValues::UInt(v), FieldValue::U64(x)) => v.push(*x),
                (ColumnValues::Float(v), FieldValue::F64(x)) => v.push(*x),
                (ColumnValues::String(v), FieldValue::String(x)) => v.push(x.clone()),
                (ColumnValues::Boolean(v), FieldValue::Bool(x)) => v.push(*x),
                _ => continue, // excluded by `check`
            }
            builder.present.push(true);
        }
        self.times.push(line.time_ns);
        self.rows += 1;
        for builder in self.tags.iter_mut().chain(self.fields.iter_mut()) {
            if builder.present.len() < self.rows {
                builder.push_absent();
            }
        }
        Ok(())
    }

    fn column(
        &mut self,
        key: &str,
        tag: bool,
        values: impl FnOnce() -> ColumnValues,
    ) -> &mut Builder {
        let rows = self.rows;
        let (_, index) = *self.columns.entry(key.to_string()).or_insert_with(|| {
            let list = if tag {
                &mut self.tags
            } else {
                &mut self.fields
            };
            list.push(Builder::new(key, values(), rows));
            (tag, list.len() - 1)
        });
        if tag {
            &mut self.tags[index]
        } else {
            &mut self.fields[index]
        }
    }

    fn finish(self) -> TableBatch {
        let mut columns: Vec<Column> = self
            .tags
            .into_iter()
            .chain(self.fields)
            .map(Builder::finish)
            .collect();
        columns.push(Column::dense("time", ColumnValues::Time(self.times)));
        TableBatch {
            table_name: self.name,
            row_count: u32::try_from(self.rows).unwrap_or(u32::MAX),
            columns,
        }
    }
}

fn key_is_time(line: &Line) -> bool {
    line.tags.iter().any(|(k, _)| k == "time") || line.fields.iter().any(|(k, _)| k == "time")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_lp::{Precision, parse};

    fn batches(lp: &str) -> Batches {
        table_batches(&parse(lp, Precision::Nanosecond, 0).lines)
    }

    #[test]
    fn columns_follow_first_appearance_and_mark_missing_values() {
        let out = batches(
            "cpu,host=a usage=1i 1\nmem,host=b free=2.5 2\ncpu,region=w usage=3i,idle=0.5 3",
        );
        assert!(out.errors.is_empty());
        let names: Vec<&str> = out.batches.iter().map(|b| b.table_name.as_str()).collect();
        assert_eq!(names, ["cpu", "mem"]);
        let cpu = &out.batches[0];
        let columns: Vec<&str> = cpu.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(columns, ["host", "region", "usage", "idle", "time"]);
        assert_eq!(cpu.columns[0].present, Some(vec![true, false]));
        assert_eq!(cpu.columns[1].present, Some(vec![false, true]));
        assert_eq!(cpu.columns[2].present, None);
        assert_eq!(cpu.columns[2].values, ColumnValues::Int(vec![1, 3]));
        assert_eq!(cpu.columns[4].values, ColumnValues::Time(vec![1, 3]));
    }

    #[test]
    fn a_field_changing_type_is_refused() {
        let out = batches("m f=1i 1\nm f=1.5 2\nm,f=x g=1i 3");
        assert_eq!(out.batches[0].row_count, 1);
        assert_eq!(out.errors.len(), 2);
        assert!(
            out.errors[0]
                .contains("column 'f' of table 'm' is a integer, but the line gives a float"),
            "{}",
            out.errors[0]
        );
    }
}
