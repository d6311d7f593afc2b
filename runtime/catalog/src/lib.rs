//! The catalog: which databases and tables exist, and the type of every column.
//!
//! Writes go through [`Catalog::validate_write`]: it checks the database name, creates
//! what the lines need (databases, tables, columns) and refuses each line whose columns
//! conflict with the types already recorded, with an error that names the line. The
//! catalog serialises to a versioned, checksummed snapshot ([`Catalog::to_bytes`],
//! [`Catalog::from_bytes`]) so that it survives restarts; the [`CatalogStore`] keeps it in
//! a file, makes each change durable before it is seen, and publishes each version.
//! Databases, tables and triggers have stable ids ([`DbId`], [`TableId`], [`TriggerId`]),
//! never given twice, by which the rest of the server keeps their state.
//!
//! ```
//! use sluice_catalog::{Catalog, ColumnType};
//! let catalog = Catalog::default();
//! let lines = sluice_lp::parse("cpu,host=a usage=1i\ncpu usage=0.5", sluice_lp::Precision::Nanosecond, 0).lines;
//! let outcome = catalog.validate_write("mydb", &lines, true).expect("a valid name");
//! assert_eq!(outcome.accepted, vec![0]);
//! assert_eq!(outcome.errors[0].line_number, 2);
//! assert_eq!(catalog.column_type("mydb", "cpu", "usage"), Some(ColumnType::Int));
//! ```

mod egress;
mod ids;
mod names;
mod quotas;
mod snapshot;
mod store;
mod tokens;
mod triggers;

pub use egress::{GrantError, HostGrant, Scheme, request_host};
pub use ids::{DatabaseRef, DbId, TableId, TriggerId};
pub use names::validate_database_name;
pub use quotas::{QuotaOverrides, Quotas};
pub use snapshot::SnapshotError;
pub use store::{CatalogStore, OpenedStore};
pub use tokens::{ADMIN_TOKEN_NAME, Access, Grant, NewToken, TokenRecord, Tokens};
pub use triggers::{
    ErrorBehavior, LimitOverrides, PluginArea, PluginType, Reach, Runtime, Trigger,
    TriggerSettings, TriggerSpec, TriggerSpecError, Use, WalStart,
};

use ids::NextIds;
use serde::{Deserialize, Serialize};
use sluice_lp::{FieldValue, Line};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

/// Errors of catalog operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The database name breaks the naming rules.
    #[error("invalid database name: {0}")]
    InvalidDatabaseName(String),
    /// No database of that name.
    #[error("Database not found {0}")]
    DatabaseNotFound(String),
    /// No table of that name in the database.
    #[error("Table not found {table} in database {database}")]
    TableNotFound {
        /// The database.
        database: String,
        /// The table.
        table: String,
    },
    /// The database or table exists already.
    #[error("attempted to create a resource that already exists")]
    AlreadyExists,
    /// A table definition that cannot be created (empty name, repeated column, …).
    #[error("invalid table definition: {0}")]
    InvalidTable(String),
    /// A token of that name exists already.
    #[error("token name already exists, {0}")]
    TokenExists(String),
    /// No token of that name.
    #[error("token not found: {0}")]
    TokenNotFound(String),
    /// A quota value out of bounds.
    #[error("invalid quota: {0}")]
    InvalidQuota(String),
    /// A change that would take a database past one of its quotas.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A token that cannot be created or deleted as asked.
    #[error("{0}")]
    InvalidToken(String),
    /// No trigger of that name in the database.
    #[error("trigger not found: {0}")]
    TriggerNotFound(String),
    /// Deleting an enabled trigger needs `force`.
    #[error("Cannot delete running plugin {0}. Disable it first or use --force.")]
    TriggerRunning(String),
    /// Another trigger serves that request path.
    #[error(
        "request path '{path}' is already served by trigger '{trigger}' of database '{database}'"
    )]
    RequestPathInUse {
        /// The path.
        path: String,
        /// The database of the trigger that has it.
        database: String,
        /// The trigger that has it.
        trigger: String,
    },
    /// The changed catalog could not be made durable.
    #[error("the catalog could not be persisted: {0}")]
    Io(String),
}

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// A tag: `Dictionary(Int32, Utf8)` when queried.
    Tag,
    /// The `time` column: `Timestamp(ns)`.
    Time,
    /// A string field.
    String,
    /// A signed integer field.
    Int,
    /// An unsigned integer field.
    UInt,
    /// A float field.
    Float,
    /// A boolean field.
    Bool,
}

impl ColumnType {
    fn of_field(value: &FieldValue) -> Self {
        match value {
            FieldValue::I64(_) => Self::Int,
            FieldValue::U64(_) => Self::UInt,
            FieldValue::F64(_) => Self::Float,
            FieldValue::String(_) => Self::String,
            FieldValue::Bool(_) => Self::Bool,
        }
    }

    /// The name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tag => "tag",
            Self::Time => "time",
            Self::String => "string",
            Self::Int => "integer",
            Self::UInt => "unsigned integer",
            Self::Float => "float",
            Self::Bool => "boolean",
        }
    }
}

/// A table's columns in the order they first appeared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Which table (catalogs written before ids: given one on load).
    #[serde(default)]
    pub id: TableId,
    /// Column names and types.
    pub columns: Vec<(String, ColumnType)>,
}

impl Table {
    fn column_type(&self, name: &str) -> Option<ColumnType> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| *t)
    }
}

/// A database's tables and triggers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    /// Which database (catalogs written before ids: given one on load).
    #[serde(default)]
    pub id: DbId,
    /// Tables by name.
    pub tables: BTreeMap<String, Table>,
    /// Processing-engine triggers by name.
    #[serde(default)]
    pub triggers: BTreeMap<String, Trigger>,
    /// Its own quotas, where they differ from the server's.
    #[serde(default, skip_serializing_if = "QuotaOverrides::is_empty")]
    pub quotas: QuotaOverrides,
}

/// Why one line of a write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineConflict {
    /// 1-based position of the line among the lines given.
    pub line_number: usize,
    /// What conflicts.
    pub message: String,
}

/// What a write may apply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteValidation {
    /// Indices of the lines that fit the catalog (which now holds their columns).
    pub accepted: Vec<usize>,
    /// The lines that did not.
    pub errors: Vec<LineConflict>,
    /// Values the accepted lines take in memory, nulls included: for each line, the
    /// columns its table has once the line's are added.
    pub cells: usize,
}

/// The columns a table may have (`time` included) unless the server says otherwise,
/// as InfluxDB 3 Core: every row of a table holds a value or a null for each of them.
pub const DEFAULT_MAX_COLUMNS: usize = 500;

/// All databases and the API tokens. Cheap to read concurrently; writes take a short lock.
#[derive(Debug)]
pub struct Catalog {
    databases: RwLock<BTreeMap<String, Database>>,
    tokens: RwLock<Tokens>,
    /// The ids the next database, table and trigger get; taken with `databases` locked
    /// for writing.
    next_ids: Mutex<NextIds>,
    /// Counts changes, so that persisting can skip a catalog that has not changed.
    generation: AtomicU64,
    /// The columns a table may have; not persisted (a server setting).
    max_columns: AtomicUsize,
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            databases: RwLock::default(),
            tokens: RwLock::default(),
            next_ids: Mutex::default(),
            generation: AtomicU64::default(),
            max_columns: AtomicUsize::new(DEFAULT_MAX_COLUMNS),
        }
    }
}

impl Catalog {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Database>> {
        self.databases
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The databases, for a change: counts as one.
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Database>> {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.databases
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `change` on a copy of the catalog and, only if it succeeds, makes the copy
    /// the catalog. `change` is where the copy is persisted, so that no reader ever sees
    /// a change that is not yet durable; readers and writers of the catalog wait
    /// meanwhile. Returns `change`'s value and the generation of the adopted catalog.
    ///
    /// `change` must use only the copy it is given, never `self`.
    ///
    /// # Errors
    ///
    /// The error of `change`; the catalog is then as it was.
    pub(crate) fn staged<T, E>(
        &self,
        change: impl FnOnce(&Catalog) -> Result<T, E>,
    ) -> Result<(T, u64), E> {
        let mut databases = self
            .databases
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        let mut next_ids = self.ids();
        let draft = Catalog {
            databases: RwLock::new(databases.clone()),
            tokens: RwLock::new(tokens.clone()),
            next_ids: Mutex::new(*next_ids),
            generation: AtomicU64::new(0),
            max_columns: AtomicUsize::new(self.max_columns()),
        };
        let value = change(&draft)?;
        *databases = draft
            .databases
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        *tokens = draft
            .tokens
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        *next_ids = draft
            .next_ids
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        Ok((value, generation))
    }

    /// The id counters; lock after `databases`.
    fn ids(&self) -> std::sync::MutexGuard<'_, NextIds> {
        self.next_ids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The columns a table may have, `time` included.
    pub fn max_columns(&self) -> usize {
        self.max_columns.load(Ordering::Relaxed)
    }

    /// Lets tables have at most `limit` columns from now on (tables that have more keep
    /// them, and take no new one).
    pub fn set_max_columns(&self, limit: usize) {
        self.max_columns.store(limit.max(2), Ordering::Relaxed);
    }

    /// A number that grows with every change; equal numbers mean an equal catalog.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The access `token` gives at `now_ms` (milliseconds since the epoch), or `None`
    /// when it is unknown or expired.
    pub fn authenticate(&self, token: &str, now_ms: i64) -> Option<Access> {
        self.tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .authenticate(token, now_ms)
    }

    /// Runs `change` on the tokens; the caller persists the catalog afterwards.
    pub fn change_tokens<T>(&self, change: impl FnOnce(&mut Tokens) -> T) -> T {
        self.generation.fetch_add(1, Ordering::AcqRel);
        change(&mut self.tokens.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// Every token record (hashes only), in creation order.
    pub fn token_records(&self) -> Vec<TokenRecord> {
        self.tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .records()
            .to_vec()
    }

    /// Creates a database.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDatabaseName`], or [`Error::AlreadyExists`].
    pub fn create_database(&self, name: &str) -> Result<(), Error> {
        validate_database_name(name)?;
        let mut databases = self.write();
        if databases.contains_key(name) {
            return Err(Error::AlreadyExists);
        }
        let id = self.ids().database();
        databases.insert(name.to_string(), Database::new(id));
        Ok(())
    }

    /// Deletes a database, and every trigger's grant of it: a database created later
    /// under the same name is not granted to anyone. A trigger whose last granted
    /// database this was is disabled: with no grant left it would no longer be narrowed,
    /// and would reach all its creator could.
    ///
    /// # Errors
    ///
    /// [`Error::DatabaseNotFound`].
    pub fn delete_database(&self, name: &str) -> Result<(), Error> {
        let mut databases = self.write();
        databases
            .remove(name)
            .ok_or_else(|| Error::DatabaseNotFound(name.to_string()))?;
        for trigger in databases
            .values_mut()
            .flat_map(|db| db.triggers.values_mut())
        {
            let narrowed = !trigger.granted_databases.is_empty();
            trigger.granted_databases.retain(|granted| granted != name);
            if narrowed && trigger.granted_databases.is_empty() {
                trigger.disabled = true;
            }
        }
        Ok(())
    }

    /// Database names in order.
    pub fn database_names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Every database's id and name, in name order.
    pub fn database_refs(&self) -> Vec<DatabaseRef> {
        self.read()
            .iter()
            .map(|(name, db)| DatabaseRef {
                id: db.id,
                name: name.clone(),
            })
            .collect()
    }

    /// Whether the database `id` was deleted: given before, and gone. (An id not given
    /// yet is not deleted: a database being created may have it.)
    pub fn database_was_deleted(&self, id: DbId) -> bool {
        let databases = self.read();
        id < self.ids().peek_database() && !databases.values().any(|db| db.id == id)
    }

    /// The id of the database named `name`.
    pub fn database_id(&self, name: &str) -> Option<DbId> {
        self.read().get(name).map(|db| db.id)
    }

    /// Whether a database exists.
    pub fn has_database(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// A copy of one database's schema.
    pub fn database(&self, name: &str) -> Option<Database> {
        self.read().get(name).cloned()
    }

    /// The type of a column, if the column exists.
    pub fn column_type(&self, database: &str, table: &str, column: &str) -> Option<ColumnType> {
        self.read()
            .get(database)?
            .tables
            .get(table)?
            .column_type(column)
    }

    /// Creates a table with the given tags and fields.
    ///
    /// # Errors
    ///
    /// [`Error::DatabaseNotFound`], or [`Error::AlreadyExists`] when the table exists.
    pub fn create_table(
        &self,
        database: &str,
        table: &str,
        tags: &[String],
        fields: &[(String, ColumnType)],
    ) -> Result<(), Error> {
        if table.is_empty() {
            return Err(Error::InvalidTable("the table name is empty".into()));
        }
        let mut columns: Vec<(String, ColumnType)> =
            tags.iter().map(|t| (t.clone(), ColumnType::Tag)).collect();
        columns.extend(fields.iter().cloned());
        for (index, (name, column_type)) in columns.iter().enumerate() {
            if name.is_empty() || name == "time" {
                return Err(Error::InvalidTable(format!(
                    "`{name}` cannot be a column name"
                )));
            }
            if *column_type == ColumnType::Time {
                return Err(Error::InvalidTable(format!(
                    "`{name}`: only `time` has the time type"
                )));
            }
            if columns[..index].iter().any(|(earlier, _)| earlier == name) {
                return Err(Error::InvalidTable(format!(
                    "column `{name}` is given twice"
                )));
            }
        }
        let mut databases = self.write();
        let db = databases
            .get_mut(database)
            .ok_or_else(|| Error::DatabaseNotFound(database.to_string()))?;
        if db.tables.contains_key(table) {
            return Err(Error::AlreadyExists);
        }
        columns.push(("time".into(), ColumnType::Time));
        let id = self.ids().table();
        db.tables
            .insert(table.to_string(), Table::with_columns(id, columns));
        Ok(())
    }

    /// Checks `lines` for `database`: creates the database, tables and columns they
    /// need, and refuses each line whose columns conflict with recorded types (or with
    /// an earlier line of the same write). Nothing changes when no line is accepted, or
    /// when some line is refused and `accept_partial` is false (the write is refused).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDatabaseName`] when the database name breaks the rules.
    pub fn validate_write(
        &self,
        database: &str,
        lines: &[Line],
        accept_partial: bool,
    ) -> Result<WriteValidation, Error> {
        self.validate_lines(database, lines, accept_partial, true)
    }

    /// [`Catalog::validate_write`] for a database that must exist already, checked under
    /// the same lock as the write's changes: a write racing with the database's deletion
    /// cannot create it again.
    ///
    /// # Errors
    ///
    /// As [`Catalog::validate_write`], and [`Error::DatabaseNotFound`].
    pub fn validate_write_existing(
        &self,
        database: &str,
        lines: &[Line],
        accept_partial: bool,
    ) -> Result<WriteValidation, Error> {
        self.validate_lines(database, lines, accept_partial, false)
    }

    fn validate_lines(
        &self,
        database: &str,
        lines: &[Line],
        accept_partial: bool,
        create: bool,
    ) -> Result<WriteValidation, Error> {
        validate_database_name(database)?;
        let mut outcome = WriteValidation::default();
        if lines.is_empty() {
            return Ok(outcome);
        }
        // Most writes add no table and no column: check those without a copy, and
        // without a lock that blocks other writers.
        if let Some(known) = self
            .read()
            .get(database)
            .and_then(|db| validate_known(db, lines))
        {
            return Ok(known);
        }
        let max_columns = self.max_columns();
        let mut databases = self.write();
        // Changes are staged on a copy and kept only if some line is written; ids taken
        // for a write that is refused are skipped, never given again.
        let mut ids = self.ids();
        let mut db = match databases.get(database) {
            Some(db) => db.clone(),
            None if create => Database::new(ids.database()),
            None => return Err(Error::DatabaseNotFound(database.to_string())),
        };
        for (index, line) in lines.iter().enumerate() {
            let table = db
                .tables
                .entry(line.table.clone())
                .or_insert_with(|| Table::new(ids.table()));
            match conflict(table, line).or_else(|| too_wide(table, line, max_columns)) {
                Some(message) => outcome.errors.push(LineConflict {
                    line_number: index + 1,
                    message,
                }),
                None => {
                    add_columns(table, line);
                    outcome.accepted.push(index);
                    outcome.cells += table.columns.len();
                }
            }
        }
        let written = !outcome.accepted.is_empty() && (accept_partial || outcome.errors.is_empty());
        if written {
            databases.insert(database.to_string(), db);
        }
        Ok(outcome)
    }
}

/// The validation of `lines` when every table and column they name exists in `db`;
/// `None` when some line would add one.
fn validate_known(db: &Database, lines: &[Line]) -> Option<WriteValidation> {
    let mut outcome = WriteValidation {
        accepted: Vec::with_capacity(lines.len()),
        errors: Vec::new(),
        cells: 0,
    };
    let mut current: Option<(&str, &Table)> = None;
    for (index, line) in lines.iter().enumerate() {
        let table = match current {
            Some((name, table)) if name == line.table => table,
            _ => {
                let table = db.tables.get(&line.table)?;
                current = Some((&line.table, table));
                table
            }
        };
        let mut keys = line
            .tags
            .iter()
            .map(|(k, _)| k)
            .chain(line.fields.iter().map(|(k, _)| k));
        if !keys.all(|key| table.column_type(key).is_some()) {
            return None;
        }
        match conflict(table, line) {
            Some(message) => outcome.errors.push(LineConflict {
                line_number: index + 1,
                message,
            }),
            None => {
                outcome.accepted.push(index);
                outcome.cells += table.columns.len();
            }
        }
    }
    Some(outcome)
}

/// Why `line` may not add its new columns to `table`: past `max_columns`.
fn too_wide(table: &Table, line: &Line, max_columns: usize) -> Option<String> {
    let new = line
        .tags
        .iter()
        .map(|(k, _)| k)
        .chain(line.fields.iter().map(|(k, _)| k))
        .filter(|key| table.column_type(key).is_none())
        .count();
    let total = table.columns.len() + new;
    (new > 0 && total > max_columns).then(|| {
        format!(
            "table '{}' would have {total} columns; a table may have at most {max_columns} \
             (time included)",
            line.table
        )
    })
}

/// The first conflict between `line` and `table`, as a message.
fn conflict(table: &Table, line: &Line) -> Option<String> {
    let mismatch = |column: &str, recorded: ColumnType, given: ColumnType| {
        Some(format!(
            "invalid column type for column '{column}', expected {}, got {}",
            recorded.name(),
            given.name()
        ))
    };
    for (key, _) in &line.tags {
        match table.column_type(key) {
            Some(ColumnType::Tag) | None => {}
            Some(recorded) => return mismatch(key, recorded, ColumnType::Tag),
        }
    }
    for (key, value) in &line.fields {
        let given = ColumnType::of_field(value);
        match table.column_type(key) {
            Some(recorded) if recorded != given => return mismatch(key, recorded, given),
            _ => {}
        }
    }
    // Lines have few columns: comparing pairs is cheaper than hashing them.
    let keys: Vec<&str> = line
        .tags
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(line.fields.iter().map(|(k, _)| k.as_str()))
        .collect();
    for (index, key) in keys.iter().enumerate() {
        if keys[..index].contains(key) {
            return Some(format!("column '{key}' appears more than once"));
        }
    }
    None
}

fn add_columns(table: &mut Table, line: &Line) {
    let time = table
        .columns
        .iter()
        .position(|(n, _)| n == "time")
        .unwrap_or(table.columns.len());
    let mut new_tags = Vec::new();
    for (key, _) in &line.tags {
        if table.column_type(key).is_none() && !new_tags.iter().any(|(k, _)| k == key) {
            new_tags.push((key.clone(), ColumnType::Tag));
        }
    }
    // Tags go before the fields, fields before `time`; each keeps first-seen order.
    let first_field = table
        .columns
        .iter()
        .position(|(_, t)| *t != ColumnType::Tag)
        .unwrap_or(time);
    table.columns.splice(first_field..first_field, new_tags);
    for (key, value) in &line.fields {
        if table.column_type(key).is_none() {
            let time = table
                .columns
                .iter()
                .position(|(n, _)| n == "time")
                .unwrap_or(table.columns.len());
            table
                .columns
                .insert(time, (key.clone(), ColumnType::of_field(value)));
        }
    }
}

#[cfg(test)]
mod tests;
