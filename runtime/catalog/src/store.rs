//! The catalog store: the catalog, its file, and the news of each change.
//!
//! A change ([`CatalogStore::change`]) is made on a copy of the catalog, the copy is
//! written to the catalog file and synced, and only then does the copy become the
//! catalog: no reader sees a change that a crash could undo, and a change that cannot be
//! persisted is not made. Writes add tables and columns in place, made durable by the
//! WAL before they are acknowledged; [`CatalogStore::persist`] writes them to the file
//! at each flush.
//!
//! Each catalog the file holds is published ([`CatalogStore::subscribe`]): its
//! generation goes out on a `tokio::sync::watch` channel, and whoever keeps state that
//! follows the catalog (the processing engine's running triggers) reconciles with it on
//! every new version, so no caller of `change` has to remember to tell anyone.

mod file;

use crate::{Catalog, Error};
use file::CatalogFile;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;

/// The catalog and its file.
pub struct CatalogStore {
    catalog: Arc<Catalog>,
    file: CatalogFile,
    /// The [`Catalog::generation`] the file holds; held while the file is written, so
    /// that an older catalog never overwrites a newer one.
    persisted: Mutex<u64>,
    /// The generation of the newest catalog the file holds, for subscribers.
    published: watch::Sender<u64>,
}

/// A store opened from its file.
pub struct OpenedStore {
    /// The store.
    pub store: CatalogStore,
    /// When the current file could not be used: what was wrong, and which earlier
    /// version was taken instead (now the current one again).
    pub fell_back: Option<String>,
}

impl CatalogStore {
    /// Loads the catalog of `data_dir` (an empty one when it has none), whose tables may
    /// have at most `max_columns` columns.
    ///
    /// # Errors
    ///
    /// A version of the file cannot be read for another reason than its absence, or every
    /// version present is damaged: a server must not start without its databases.
    pub fn open(data_dir: &Path, max_columns: usize) -> std::io::Result<OpenedStore> {
        let file = CatalogFile::new(data_dir);
        let loaded = file.load()?;
        let catalog = loaded.catalog;
        catalog.set_max_columns(max_columns);
        if loaded.fell_back.is_some() {
            // The version taken becomes the current one again.
            file.write(&catalog.to_bytes())?;
        }
        let generation = catalog.generation();
        Ok(OpenedStore {
            store: Self {
                catalog: Arc::new(catalog),
                file,
                persisted: Mutex::new(generation),
                published: watch::Sender::new(generation),
            },
            fell_back: loaded.fell_back,
        })
    }

    /// The catalog as it is now.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The generation of each catalog persisted from now on, starting with the current
    /// one.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Runs `change` on a copy of the catalog, persists the copy, and only then makes it
    /// the catalog and publishes it. `change` must use only the copy it is given.
    ///
    /// # Errors
    ///
    /// The error of `change`, or [`Error::Io`] when the copy cannot be persisted; the
    /// catalog is then unchanged.
    pub fn change<T>(&self, change: impl FnOnce(&Catalog) -> Result<T, Error>) -> Result<T, Error> {
        let mut persisted = self.persisted();
        let (value, generation) = self.catalog.staged(|draft| {
            let value = change(draft)?;
            self.file
                .write(&draft.to_bytes())
                .map_err(|e| Error::Io(e.to_string()))?;
            Ok(value)
        })?;
        *persisted = generation;
        self.published.send_replace(generation);
        Ok(value)
    }

    /// Writes the catalog to its file if it changed in place since it was last written
    /// (tables and columns added by writes), and publishes it.
    ///
    /// # Errors
    ///
    /// I/O errors; the file then holds the catalog as it was.
    pub fn persist(&self) -> std::io::Result<()> {
        let mut persisted = self.persisted();
        // Read before serialising: a change made meanwhile is written now or next time.
        let generation = self.catalog.generation();
        if *persisted == generation {
            return Ok(());
        }
        self.file.write(&self.catalog.to_bytes())?;
        *persisted = generation;
        self.published.send_replace(generation);
        Ok(())
    }

    fn persisted(&self) -> std::sync::MutexGuard<'_, u64> {
        self.persisted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_seen_and_published_only_once_persisted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = CatalogStore::open(dir.path(), 500).expect("opens").store;
        let mut versions = store.subscribe();
        versions.mark_unchanged();

        store
            .change(|catalog| catalog.create_database("db"))
            .expect("created");
        assert!(versions.has_changed().expect("open"));
        assert_eq!(*versions.borrow_and_update(), store.catalog().generation());
        let reopened = CatalogStore::open(dir.path(), 500).expect("opens").store;
        assert!(
            reopened.catalog().has_database("db"),
            "durable when it returned"
        );

        // A change that fails is neither made nor published.
        let refused = store.change(|catalog| catalog.create_database("db"));
        assert_eq!(refused, Err(Error::AlreadyExists));
        assert!(!versions.has_changed().expect("open"));

        // A change that cannot be persisted is not made.
        std::fs::remove_dir_all(dir.path()).expect("removed");
        let lost = store.change(|catalog| catalog.create_database("other"));
        assert!(matches!(lost, Err(Error::Io(_))), "{lost:?}");
        assert!(!store.catalog().has_database("other"));
        assert!(!versions.has_changed().expect("open"));
    }

    #[test]
    fn changes_made_in_place_are_persisted_and_published_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = CatalogStore::open(dir.path(), 500).expect("opens").store;
        let mut versions = store.subscribe();
        versions.mark_unchanged();
        let lines = sluice_lp::parse("cpu usage=1i", sluice_lp::Precision::Nanosecond, 0).lines;
        store
            .catalog()
            .validate_write("db", &lines, true)
            .expect("valid");
        assert!(!versions.has_changed().expect("open"), "not yet persisted");
        store.persist().expect("persisted");
        assert!(versions.has_changed().expect("open"));
        versions.mark_unchanged();
        store.persist().expect("nothing to do");
        assert!(!versions.has_changed().expect("open"));
        let reopened = CatalogStore::open(dir.path(), 500).expect("opens").store;
        assert!(
            reopened
                .catalog()
                .column_type("db", "cpu", "usage")
                .is_some()
        );
    }
}
