//! What start-up found wrong with the stored data: named in the log and kept for the
//! server's lifetime, for `system.storage_problems` and the admin's
//! `GET /api/v3/configure/storage/problems`.

use serde::Serialize;

/// One problem with the stored data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageProblem {
    /// The database it concerns, when one does.
    pub database: Option<String>,
    /// The table it concerns, when one does.
    pub table: Option<String>,
    /// The file or object: a path under the data directory or on the object store.
    pub object: String,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// What is wrong, and what the server did about it.
    pub detail: String,
}

/// The kinds of [`StorageProblem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The current catalog file was missing or damaged; an earlier version was used.
    Catalog,
    /// A WAL file was damaged; the records before the damage were replayed.
    Wal,
    /// A Parquet file a manifest lists is missing, not of the size listed, or does not
    /// end in a Parquet footer: its rows are left out of queries.
    Parquet,
    /// A snapshot manifest cannot be read: the files it lists are unreferenced.
    Manifest,
    /// A Parquet file nothing lists (a database the catalog does not know, or a
    /// snapshot that never finished): kept, not queried, until the admin removes it.
    Unreferenced,
}

impl ProblemKind {
    /// The kind as `system.storage_problems` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Catalog => "catalog",
            Self::Wal => "wal",
            Self::Parquet => "parquet",
            Self::Manifest => "manifest",
            Self::Unreferenced => "unreferenced",
        }
    }
}
