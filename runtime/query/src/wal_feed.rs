//! The WAL as WAL triggers reach it: each flush handed to the engine as it is logged, and
//! older flushes read back from the storage's WAL files.

use sluice_engine::flush_log::{Found, RemovedRows, WalLog};
use sluice_engine::manager::TriggerManager;
use sluice_storage::{FlushObserver, FlushedRows, LoggedFlush, WriteBuffer};
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

    fn oldest(&self) -> u64 {
        self.0
            .upgrade()
            .map_or(u64::MAX, |storage| storage.wal_oldest())
    }

    fn read(&self, sequence: u64, database: &str) -> Found {
        let Some(storage) = self.0.upgrade() else {
            return Found::Unreadable("the server is stopping".into());
        };
        match storage.read_flush(sequence, database) {
            Ok(LoggedFlush::Rows { rows, damage }) => Found::Rows(rows, damage),
            Ok(LoggedFlush::Removed(held)) => Found::Removed(held.map(|tables| {
                tables
                    .into_iter()
                    .map(|held| RemovedRows {
                        table: held.table,
                        rows: held.rows,
                        min_time_ns: held.min_time_ns,
                        max_time_ns: held.max_time_ns,
                    })
                    .collect()
            })),
            Ok(LoggedFlush::Missing) => Found::Missing,
            Err(e) => Found::Unreadable(e.to_string()),
        }
    }
}
