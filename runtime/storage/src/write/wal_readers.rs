//! The WAL as its readers (the processing engine's WAL triggers) see it: flushes read
//! back by sequence, and files kept past their snapshot while a reader needs them,
//! within the WAL retention. A file removed for want of room leaves a note of what it
//! held, so that a reader coming to it later can say what it skipped.

use super::*;
use serde::{Deserialize, Serialize};
use sluice_wal::Logged;
use std::collections::BTreeMap;

/// One table's rows in a WAL file removed before its readers came to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedRows {
    /// The table.
    pub table: String,
    /// Its rows.
    pub rows: u64,
    /// The earliest row's time, nanoseconds since the epoch.
    pub min_time_ns: i64,
    /// The latest row's time.
    pub max_time_ns: i64,
}

/// A flush, as its WAL file gives it back.
#[derive(Debug)]
pub enum LoggedFlush {
    /// Read back.
    Rows {
        /// Its rows of the database asked for, if the catalog still has it.
        rows: FlushedRows,
        /// What cut the file short, if anything: the rows are those before it.
        damage: Option<String>,
    },
    /// Removed for want of room before its readers came to it: what it held of the
    /// database asked for, table by table, when its note could be read.
    Removed(Option<Vec<RemovedRows>>),
    /// Not there: removed when no reader needed it, or never written.
    Missing,
}

impl WriteBuffer {
    /// The sequence of the last WAL file written (0 when none was).
    pub fn wal_head(&self) -> u64 {
        lock(&self.wal).last_sequence()
    }

    /// The sequence of the oldest WAL file there is (one past the last written when there
    /// is none).
    pub fn wal_oldest(&self) -> u64 {
        // Listed off the WAL's lock, which the flushes take.
        match sluice_wal::first_sequence(&self.wal_dir) {
            Ok(Some(first)) => first,
            Ok(None) => self.wal_head() + 1,
            Err(e) => {
                tracing::warn!("cannot list the WAL files: {e}");
                self.wal_head() + 1
            }
        }
    }

    /// The rows of `database` in WAL file `sequence`, read back and parsed (the other
    /// databases' lines are not).
    ///
    /// # Errors
    ///
    /// A file exists but cannot be read.
    pub fn read_flush(&self, sequence: u64, database: &str) -> std::io::Result<LoggedFlush> {
        let (records, damage) = match sluice_wal::read_sequence(&self.wal_dir, sequence)? {
            Logged::Records(records, damage) => (records, damage),
            Logged::Removed(note) => {
                return Ok(match serde_json::from_slice::<Note>(&note) {
                    Ok(mut note) => match note.remove(database) {
                        Some(removed) => LoggedFlush::Removed(Some(removed)),
                        // Nothing of the database's was lost.
                        None => LoggedFlush::Rows {
                            rows: Arc::default(),
                            damage: None,
                        },
                    },
                    Err(_) => LoggedFlush::Removed(None),
                });
            }
            Logged::Missing => return Ok(LoggedFlush::Missing),
        };
        let rows = records
            .into_iter()
            .filter(|record| record.database == database && self.catalog().has_database(database))
            .map(|record| {
                // Validated when written: every line parses back as it was.
                let parsed = sluice_lp::parse(&record.line_protocol, Precision::Nanosecond, 0);
                (record.database, parsed.lines)
            })
            .collect();
        Ok(LoggedFlush::Rows {
            rows: Arc::new(rows),
            damage: damage.map(|d| d.reason),
        })
    }

    /// Removes the WAL files a snapshot covers through `wal_sequence`, but for those WAL
    /// triggers still need, within the retention. Off the WAL's lock, on a blocking
    /// thread: writing the notes of the files removed for want of room reads them whole,
    /// and ingest goes on meanwhile.
    pub(super) async fn trim_wal(&self, wal_sequence: u64) {
        let observer = lock(&self.flush_observer).clone();
        let kept_from = observer.and_then(|o| o.oldest_needed()).unwrap_or(u64::MAX);
        let (dir, retention_bytes) = (self.wal_dir.clone(), self.wal_retention_bytes);
        let trimmed = tokio::task::spawn_blocking(move || {
            sluice_wal::trim(&dir, wal_sequence, kept_from, retention_bytes, note)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|trimmed| trimmed);
        match trimmed {
            Ok(trimmed) => {
                if let Some(last) = trimmed.evicted.last() {
                    tracing::warn!(
                        retention_bytes,
                        files = trimmed.evicted.len(),
                        "WAL files that WAL triggers had not processed were removed, the \
                         last {last}: they held more than the WAL retention \
                         (--wal-retention-mib)"
                    );
                }
                if !trimmed.unnoted.is_empty() {
                    tracing::error!(
                        "the notes of removed WAL files {:?} could not be written: the \
                         triggers that needed them will say only that they are missing",
                        trimmed.unnoted
                    );
                }
            }
            // Harmless: start-up skips WAL files a snapshot covers.
            Err(e) => tracing::warn!("could not remove WAL files a snapshot covers: {e}"),
        }
    }
}

/// What a removed WAL file held, by database, table by table.
type Note = BTreeMap<String, Vec<RemovedRows>>;

/// The note a WAL file of `records` leaves when removed for want of room.
fn note(records: &[sluice_wal::WalRecord]) -> Vec<u8> {
    let mut note = Note::new();
    for record in records {
        let parsed = sluice_lp::parse(&record.line_protocol, Precision::Nanosecond, 0);
        let tables = note.entry(record.database.clone()).or_default();
        for line in &parsed.lines {
            let index = match tables.iter().position(|t| t.table == line.table) {
                Some(index) => index,
                None => {
                    tables.push(RemovedRows {
                        table: line.table.clone(),
                        rows: 0,
                        min_time_ns: i64::MAX,
                        max_time_ns: i64::MIN,
                    });
                    tables.len() - 1
                }
            };
            let removed = &mut tables[index];
            removed.rows += 1;
            removed.min_time_ns = removed.min_time_ns.min(line.time_ns);
            removed.max_time_ns = removed.max_time_ns.max(line.time_ns);
        }
    }
    // Plain data: serialising it cannot fail.
    serde_json::to_vec(&note).unwrap_or_default()
}
