//! The WAL as WAL triggers reach it: each flush handed to the engine as it is logged, and
//! older flushes read back from the storage's WAL files.

use sluice_engine::flush_log::{Flush, WalLog};
use sluice_engine::manager::TriggerManager;
use sluice_storage::{FlushObserver, FlushedRows, WriteBuffer};
use std::sync::{Arc, Weak};

/// Hands each flush's rows to the WAL triggers, and keeps the WAL files they still need.
pub struct FlushFeed(pub Arc<TriggerManager>);

impl FlushObserver for FlushFeed {
    fn flushed(&self, sequence: u64, rows: FlushedRows) {
        self.0.flushed(sequence, rows);
    }

    fn oldest_needed(&self) -> Option<u64> {
        self.0.oldest_needed()
    }
}

/// The storage's WAL, read back for WAL triggers that are behind.
pub struct StorageWal(pub Weak<WriteBuffer>);

impl WalLog for StorageWal {
    fn head(&self) -> u64 {
        self.0.upgrade().map_or(0, |storage| storage.wal_head())
    }

    fn read(
        &self,
        sequence: u64,
        database: &str,
    ) -> std::io::Result<Option<(Flush, Option<String>)>> {
        let Some(storage) = self.0.upgrade() else {
            return Ok(None);
        };
        let logged = storage.read_flush(sequence, database)?;
        Ok(logged.map(|flush| (flush.rows, flush.damage)))
    }
}
