//! The catalog on disk: the current file and the few versions before it, to fall back
//! on when the current one is lost or damaged.
//!
//! A change is written to `catalog.tmp` and synced; then `catalog.2` moves to
//! `catalog.3`, `catalog.1` to `catalog.2`, `catalog` to `catalog.1`, `catalog.tmp` to
//! `catalog`, and the directory is synced so that the renames survive a power loss. A
//! crash between two renames leaves the newest complete version under the lowest
//! number, which start-up takes. A damaged current version is moved to
//! `catalog.damaged` when an earlier one is taken, and the earlier one is then written
//! as the current one (by the storage, at start).

use crate::Catalog;
use std::io::{Error, ErrorKind};
use std::path::{Path, PathBuf};

/// Earlier versions kept beside the current one.
pub(super) const KEPT_VERSIONS: usize = 3;

/// Where a damaged current version goes when an earlier one is used instead.
const DAMAGED: &str = "catalog.damaged";

/// The catalog's files in the data directory.
pub(super) struct CatalogFile {
    dir: PathBuf,
}

/// The catalog start-up found.
pub(super) struct LoadedCatalog {
    pub(super) catalog: Catalog,
    /// When the current file could not be used: what was wrong, and which earlier
    /// version was taken instead.
    pub(super) fell_back: Option<String>,
}

impl CatalogFile {
    /// The catalog files of `data_dir`.
    pub(super) fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.to_path_buf(),
        }
    }

    /// `catalog` for version 0, `catalog.N` for the Nth before it.
    fn path(&self, version: usize) -> PathBuf {
        match version {
            0 => self.dir.join("catalog"),
            n => self.dir.join(format!("catalog.{n}")),
        }
    }

    /// The newest version that reads; an empty catalog when there is none at all.
    ///
    /// # Errors
    ///
    /// A version cannot be read for another reason than its absence (permissions), or
    /// every version present is damaged: start-up must not go on without the
    /// databases, which an empty catalog would lose.
    pub(super) fn load(&self) -> std::io::Result<LoadedCatalog> {
        let mut problems = Vec::new();
        for version in 0..=KEPT_VERSIONS {
            let path = self.path(version);
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    problems.push(format!("{} is missing", file_name(&path)));
                    continue;
                }
                Err(e) => return Err(Error::new(e.kind(), format!("{}: {e}", path.display()))),
            };
            match Catalog::from_bytes(&bytes) {
                Ok(catalog) if version == 0 => {
                    return Ok(LoadedCatalog {
                        catalog,
                        fell_back: None,
                    });
                }
                Ok(catalog) => {
                    let current = self.path(0);
                    if current.exists() {
                        // Kept to look at, out of the versions' way.
                        std::fs::rename(&current, self.dir.join(DAMAGED))?;
                        problems.push(format!("kept as {DAMAGED}"));
                    }
                    let fell_back = format!(
                        "{}; using {}, the version before: changes to databases, tables, \
                         tokens and triggers made after it are lost, and a token deleted \
                         since works again until it is deleted anew (`sluice show tokens`)",
                        problems.join(", "),
                        file_name(&path)
                    );
                    return Ok(LoadedCatalog {
                        catalog,
                        fell_back: Some(fell_back),
                    });
                }
                Err(e) => problems.push(format!("{} is damaged ({e})", file_name(&path))),
            }
        }
        let damaged = problems.iter().any(|problem| problem.contains("damaged"));
        if damaged {
            return Err(Error::new(
                ErrorKind::InvalidData,
                format!(
                    "{}: no version of the catalog can be read: {}",
                    self.dir.display(),
                    problems.join(", ")
                ),
            ));
        }
        Ok(LoadedCatalog {
            catalog: Catalog::default(),
            fell_back: None,
        })
    }

    /// Makes `bytes` the current version, keeping [`KEPT_VERSIONS`] before it; durable
    /// when it returns.
    ///
    /// # Errors
    ///
    /// I/O errors; the current version is then the one before, or this one.
    pub(super) fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let temporary = self.dir.join("catalog.tmp");
        let mut file = std::fs::File::create(&temporary)?;
        std::io::Write::write_all(&mut file, bytes)?;
        file.sync_all()?;
        for version in (0..KEPT_VERSIONS).rev() {
            match std::fs::rename(self.path(version), self.path(version + 1)) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&temporary, self.path(0))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog_with(database: &str) -> Vec<u8> {
        let catalog = Catalog::default();
        catalog.create_database(database).expect("created");
        catalog.to_bytes()
    }

    #[test]
    fn a_lost_or_damaged_catalog_falls_back_to_the_version_before() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = CatalogFile::new(dir.path());
        assert!(
            files
                .load()
                .expect("empty")
                .catalog
                .database_names()
                .is_empty()
        );
        for n in 0..5 {
            files
                .write(&catalog_with(&format!("db{n}")))
                .expect("written");
        }
        let names = |loaded: LoadedCatalog| loaded.catalog.database_names();
        assert_eq!(names(files.load().expect("loads")), ["db4"]);
        // Only the kept versions stay.
        assert!(files.path(KEPT_VERSIONS).exists());
        assert!(!files.path(KEPT_VERSIONS + 1).exists());

        std::fs::write(files.path(0), b"SLUICECT garbage").expect("damaged");
        let loaded = files.load().expect("falls back");
        let why = loaded.fell_back.clone().expect("says so");
        assert!(
            why.contains("catalog is damaged") && why.contains("using catalog.1"),
            "{why}"
        );
        assert!(why.contains("kept as catalog.damaged") && dir.path().join(DAMAGED).exists());
        assert_eq!(names(loaded), ["db3"]);

        // The damaged one moved aside; the one before lost too.
        assert!(!files.path(0).exists());
        std::fs::remove_file(files.path(1)).expect("lost");
        let loaded = files.load().expect("falls back");
        assert!(
            loaded
                .fell_back
                .as_deref()
                .is_some_and(|why| why.contains("catalog.1 is missing"))
        );
        assert_eq!(names(loaded), ["db2"]);

        // Every version damaged: refused, never an empty catalog.
        for version in 2..=KEPT_VERSIONS {
            std::fs::write(files.path(version), b"garbage").expect("damaged");
        }
        let refused = files.load().err().expect("refused");
        assert_eq!(refused.kind(), ErrorKind::InvalidData);
        assert!(
            refused
                .to_string()
                .contains("no version of the catalog can be read")
        );
    }
}
