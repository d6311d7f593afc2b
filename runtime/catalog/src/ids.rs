//! Stable ids of databases, tables and triggers.
//!
//! A name says what people and plugins call a thing; an id says which thing it is. The
//! catalog gives each database, table and trigger an id when it is made, from counters
//! kept in the catalog file, and never gives an id twice: a database deleted and created
//! again under its name is another id, so whatever the server keeps per database or
//! trigger in memory (caches, warm instances, queues, records) is keyed by id and needs
//! nothing to tell the two apart.
//!
//! Catalog files written before ids existed hold none: [`NextIds::assign_missing`] gives
//! their databases, tables and triggers ids when they load, in name order.

use crate::{Database, Table};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(u32);

        impl $name {
            /// The id numbered `id`: for fakes and tests; only the catalog gives ids.
            pub const fn new(id: u32) -> Self {
                Self(id)
            }

            /// The id as a number (0: not assigned yet).
            pub fn get(self) -> u32 {
                self.0
            }

            fn is_assigned(self) -> bool {
                self.0 != 0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Which database: unique in the catalog's life, never reused.
    DbId
);
id_type!(
    /// Which table, of any database: unique in the catalog's life, never reused.
    TableId
);
id_type!(
    /// Which trigger, of any database: unique in the catalog's life, never reused. An
    /// update or a disable keeps it; a delete and create under the name does not.
    TriggerId
);

/// A database as the engine refers to it: its id (which database) and its name (what
/// plugins and people call it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatabaseRef {
    /// Which database.
    pub id: DbId,
    /// Its name.
    pub name: String,
}

/// The next id of each kind; persisted with the catalog so that ids are never reused,
/// across restarts included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NextIds {
    database: u32,
    table: u32,
    trigger: u32,
}

impl Default for NextIds {
    fn default() -> Self {
        // 0 means "not assigned": catalogs written before ids had none.
        Self {
            database: 1,
            table: 1,
            trigger: 1,
        }
    }
}

/// The next value of `counter`, which then moves on. Four billion of a kind made in one
/// catalog's life is past any use; the counter then stays at its last value rather than
/// wrapping to ids in use.
fn take(counter: &mut u32) -> u32 {
    let id = *counter;
    *counter = counter.saturating_add(1);
    id
}

impl NextIds {
    pub(crate) fn database(&mut self) -> DbId {
        DbId(take(&mut self.database))
    }

    /// The id the next database will get.
    pub(crate) fn peek_database(&self) -> DbId {
        DbId(self.database)
    }

    pub(crate) fn table(&mut self) -> TableId {
        TableId(take(&mut self.table))
    }

    pub(crate) fn trigger(&mut self) -> TriggerId {
        TriggerId(take(&mut self.trigger))
    }

    /// Gives an id to each database, table and trigger of `databases` that has none (a
    /// catalog written before ids), in name order, and moves the counters past every id
    /// in use (whatever the file says).
    pub(crate) fn assign_missing(&mut self, databases: &mut BTreeMap<String, Database>) {
        let all = databases.values();
        self.database = self.database.max(
            all.clone()
                .map(|db| db.id.0.saturating_add(1))
                .max()
                .unwrap_or(1),
        );
        let tables = all.clone().flat_map(|db| db.tables.values());
        self.table = self
            .table
            .max(tables.map(|t| t.id.0.saturating_add(1)).max().unwrap_or(1));
        let triggers = all.flat_map(|db| db.triggers.values());
        self.trigger = self.trigger.max(
            triggers
                .map(|t| t.id.0.saturating_add(1))
                .max()
                .unwrap_or(1),
        );
        for db in databases.values_mut() {
            if !db.id.is_assigned() {
                db.id = self.database();
            }
            for table in db.tables.values_mut().filter(|t| !t.id.is_assigned()) {
                table.id = self.table();
            }
            for trigger in db.triggers.values_mut().filter(|t| !t.id.is_assigned()) {
                trigger.id = self.trigger();
            }
        }
    }
}

impl Database {
    /// An empty database with id `id`.
    pub(crate) fn new(id: DbId) -> Self {
        Self {
            id,
            tables: BTreeMap::new(),
            triggers: BTreeMap::new(),
            quotas: crate::QuotaOverrides::default(),
        }
    }
}

impl Table {
    /// A table with only the `time` column.
    pub(crate) fn new(id: TableId) -> Self {
        Self::with_columns(id, vec![("time".into(), crate::ColumnType::Time)])
    }

    pub(crate) fn with_columns(id: TableId, columns: Vec<(String, crate::ColumnType)>) -> Self {
        Self { id, columns }
    }
}
