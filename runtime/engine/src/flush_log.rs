//! The flushes WAL triggers read, by WAL sequence: the newest from memory, older ones
//! read back from their WAL files, so that a trigger that falls behind costs disk the WAL
//! retention bounds, never memory.

use crate::lag::{FlushIndex, Lag};
use sluice_lp::Line;
use sluice_plugin_api::thread_cpu_time;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// Rows of one flush, by database.
pub type Flush = Arc<Vec<(String, Vec<Line>)>>;

/// The lines of flushes kept in memory for triggers that keep up; older flushes are read
/// back from the WAL. About as many as ten full flushes (`--wal-max-pending-lines`).
pub(crate) const RECENT_LINES: usize = 100_000;

/// The write-ahead log, as WAL triggers read it.
pub trait WalLog: Send + Sync {
    /// The sequence of the last flush written (0: none yet).
    fn head(&self) -> u64;

    /// The sequence of the oldest flush the WAL still holds (one past the head when it
    /// holds none).
    fn oldest(&self) -> u64;

    /// The rows of `database` in flush `sequence`, read back from its WAL file (the
    /// other databases' are left unread: a tenant's trigger that is behind never costs
    /// parsing another tenant's rows).
    fn read(&self, sequence: u64, database: &str) -> Found;
}

/// A flush found for a trigger.
#[derive(Debug)]
pub enum Found {
    /// Its rows, and what cut its WAL file short, if anything.
    Rows(Flush, Option<String>),
    /// Its WAL file was removed for want of room before the trigger came to it: what it
    /// held of the trigger's database, table by table, when known.
    Removed(Option<Vec<RemovedRows>>),
    /// Its WAL file is not there (removed when no trigger needed it).
    Missing,
    /// Its WAL file could not be read.
    Unreadable(String),
}

/// One table's rows in a flush removed before a trigger came to it.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The flushes, the newest in memory.
pub struct FlushLog {
    wal: Arc<dyn WalLog>,
    /// The sequence of the newest flush.
    head: watch::Sender<u64>,
    recent: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    flushes: VecDeque<(u64, Flush)>,
    lines: usize,
    /// A summary of each recent flush, for lags.
    index: FlushIndex,
}

impl FlushLog {
    /// The flushes of `wal`, from its head on in memory.
    pub fn new(wal: Arc<dyn WalLog>) -> Self {
        let head = wal.head();
        Self {
            wal,
            head: watch::Sender::new(head),
            recent: Mutex::default(),
        }
    }

    /// Records flush `sequence`; its rows stay in memory only if `kept` (some WAL trigger
    /// runs), and only while they are among the newest; its summary, only if `kept`.
    pub fn flushed(&self, sequence: u64, rows: Flush, kept: bool) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if !kept {
            *recent = Recent::default();
        } else {
            recent.index.record(sequence, &rows);
            recent.lines += lines(&rows);
            recent.flushes.push_back((sequence, rows));
            while recent.lines > RECENT_LINES && recent.flushes.len() > 1 {
                if let Some((_, old)) = recent.flushes.pop_front() {
                    recent.lines -= lines(&old);
                }
            }
        }
        drop(recent);
        self.head.send_replace(sequence);
    }

    /// The sequence of the newest flush.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// The lag of a trigger at `cursor` that wants the rows of `database` for which
    /// `wants(table)` holds.
    pub fn lag(&self, cursor: u64, database: &str, wants: impl Fn(&str) -> bool) -> Lag {
        let head = self.head();
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.index.lag(cursor, head, database, wants)
    }

    /// The sequence of the oldest flush the WAL still holds, blocking on the directory.
    pub fn oldest(&self) -> u64 {
        self.wal.oldest()
    }

    /// Follows the sequence of the newest flush.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Flush `sequence`, all of it from memory, or read back from the WAL with the rows
    /// of `database` only; and the CPU time reading it back took (none from memory).
    pub async fn get(&self, sequence: u64, database: &str) -> (Found, Duration) {
        if let Some(rows) = self.in_memory(sequence) {
            return (Found::Rows(rows, None), Duration::ZERO);
        }
        let wal = Arc::clone(&self.wal);
        let database = database.to_string();
        tokio::task::spawn_blocking(move || {
            let start = thread_cpu_time();
            let found = wal.read(sequence, &database);
            (found, thread_cpu_time().saturating_sub(start))
        })
        .await
        .unwrap_or_else(|e| (Found::Unreadable(e.to_string()), Duration::ZERO))
    }

    fn in_memory(&self, sequence: u64) -> Option<Flush> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let index = recent
            .flushes
            .binary_search_by_key(&sequence, |(sequence, _)| *sequence)
            .ok()?;
        Some(Arc::clone(&recent.flushes[index].1))
    }
}

/// The lines of a flush, of every database.
pub(crate) fn lines(rows: &Flush) -> usize {
    rows.iter().map(|(_, lines)| lines.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_lp::{Precision, parse};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A WAL that has every sequence up to 1,000 but 7, one line each, and counts reads.
    #[derive(Default)]
    struct Disk {
        reads: AtomicUsize,
    }

    impl WalLog for Disk {
        fn head(&self) -> u64 {
            0
        }

        fn oldest(&self) -> u64 {
            1
        }

        fn read(&self, sequence: u64, _: &str) -> Found {
            self.reads.fetch_add(1, Ordering::SeqCst);
            match sequence {
                7 => Found::Missing,
                _ => Found::Rows(flush(sequence, 1), None),
            }
        }
    }

    fn flush(sequence: u64, lines: usize) -> Flush {
        let text: Vec<String> = (0..lines).map(|i| format!("t f={sequence}i {i}")).collect();
        let parsed = parse(&text.join("\n"), Precision::Nanosecond, 0);
        Arc::new(vec![("db".to_string(), parsed.lines)])
    }

    fn first_field((found, _): (Found, Duration)) -> String {
        match found {
            Found::Rows(rows, _) => format!("{:?}", rows[0].1[0].fields[0].1),
            Found::Missing => "missing".into(),
            other => format!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_newest_flushes_come_from_memory_and_older_ones_from_the_wal() {
        let disk = Arc::new(Disk::default());
        let log = FlushLog::new(Arc::clone(&disk) as Arc<dyn WalLog>);
        let per_flush = RECENT_LINES / 4;
        for sequence in 1..=6 {
            log.flushed(sequence, flush(sequence, per_flush), true);
        }
        assert_eq!(log.head(), 6);
        for sequence in 3..=6 {
            assert!(first_field(log.get(sequence, "db").await).contains(&sequence.to_string()));
        }
        assert_eq!(
            disk.reads.load(Ordering::SeqCst),
            0,
            "the newest four are in memory"
        );
        assert!(first_field(log.get(2, "db").await).contains('2'));
        assert_eq!(
            disk.reads.load(Ordering::SeqCst),
            1,
            "older ones are read back"
        );
        assert_eq!(first_field(log.get(7, "db").await), "missing");

        // Not kept while no trigger wants them: the head moves all the same.
        log.flushed(8, flush(8, 1), false);
        assert_eq!(log.head(), 8);
        log.get(8, "db").await;
        assert_eq!(disk.reads.load(Ordering::SeqCst), 3);
    }
}
