//! How far behind the WAL's head a WAL trigger is: in flushes, in rows of its own, and in
//! seconds since the oldest flush it has not finished with was written. Rows and seconds
//! come from a summary of each recent flush ([`FlushIndex`]); for a trigger further
//! behind than the summaries reach, or behind flushes from before the server started,
//! they are unknown; and rows, for a trigger behind more summarised counts than
//! [`MAX_COUNTS_READ`]: they are added up under the lock the flushing thread takes to
//! record each flush, and a tenant may ask for them as often as it likes.

use sluice_lp::Line;
use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

/// The flushes summarised: with a flush of 10,000 lines a second, more than a day.
const INDEXED_FLUSHES: usize = 100_000;
/// The (database, table) counts summarised, all flushes together: a bound on their
/// memory whatever the number of tables a flush holds.
const INDEXED_COUNTS: usize = 1_000_000;
/// The (database, table) counts one lag reads at most to add up its rows.
pub const MAX_COUNTS_READ: usize = 20_000;

/// How far behind the WAL's head a WAL trigger is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// Flushes written after its cursor.
    pub flushes: u64,
    /// Their rows it wants, if known.
    pub rows: Option<u64>,
    /// Seconds since the first of them was written (0 when there is none), if known.
    pub seconds: Option<f64>,
}

/// Where a running WAL trigger is in the WAL.
#[derive(Debug, Clone, PartialEq)]
pub struct WalPosition {
    /// Its database.
    pub database: String,
    /// The trigger.
    pub trigger: String,
    /// The sequence of the last flush it has finished with.
    pub cursor: u64,
    /// The sequence of the newest flush.
    pub head: u64,
    /// How far behind it is.
    pub lag: Lag,
}

/// What one flush held: rows by database, then by table.
struct Summary {
    sequence: u64,
    written: SystemTime,
    rows: Vec<(String, Vec<(String, u64)>)>,
}

/// Summaries of the newest flushes, in sequence order.
#[derive(Default)]
pub struct FlushIndex {
    summaries: VecDeque<Summary>,
    /// The (database, table) counts of all of them.
    counts: usize,
}

impl Summary {
    fn counts(&self) -> usize {
        self.rows.iter().map(|(_, tables)| tables.len()).sum()
    }
}

impl FlushIndex {
    /// Summarises flush `sequence`, written now. Runs on the flushing thread: one pass
    /// over the lines, which mostly come in runs of one table.
    pub fn record(&mut self, sequence: u64, rows: &[(String, Vec<Line>)]) {
        let rows = rows
            .iter()
            .map(|(database, lines)| (database.clone(), count_by_table(lines)))
            .collect();
        let summary = Summary {
            sequence,
            written: SystemTime::now(),
            rows,
        };
        self.counts += summary.counts();
        self.summaries.push_back(summary);
        while self.summaries.len() > INDEXED_FLUSHES || self.counts > INDEXED_COUNTS {
            match self.summaries.pop_front() {
                Some(oldest) => self.counts -= oldest.counts(),
                None => break,
            }
        }
    }

    /// Forgets every summary (no WAL trigger needs them).
    pub fn clear(&mut self) {
        self.summaries = VecDeque::new();
        self.counts = 0;
    }

    /// The lag of a trigger at `cursor` when the head is `head`, wanting the rows of
    /// `database` for which `wants(table)` holds.
    pub fn lag(&self, cursor: u64, head: u64, database: &str, wants: impl Fn(&str) -> bool) -> Lag {
        let flushes = head.saturating_sub(cursor);
        if flushes == 0 {
            return Lag {
                flushes,
                rows: Some(0),
                seconds: Some(0.0),
            };
        }
        // Known only if the summaries reach back to the first flush after the cursor.
        let first = cursor + 1;
        let start = self.summaries.partition_point(|s| s.sequence < first);
        let Some(oldest) = self.summaries.get(start).filter(|s| s.sequence == first) else {
            return Lag {
                flushes,
                rows: None,
                seconds: None,
            };
        };
        let seconds = SystemTime::now()
            .duration_since(oldest.written)
            .unwrap_or_default()
            .as_secs_f64();
        let mut rows = 0;
        let mut read = 0;
        for summary in self.summaries.range(start..) {
            if summary.sequence > head {
                break;
            }
            read += summary.counts();
            if read > MAX_COUNTS_READ {
                return Lag {
                    flushes,
                    rows: None,
                    seconds: Some(seconds),
                };
            }
            rows += summary
                .rows
                .iter()
                .filter(|(name, _)| name == database)
                .flat_map(|(_, tables)| tables)
                .filter(|(table, _)| wants(table))
                .map(|(_, rows)| rows)
                .sum::<u64>();
        }
        Lag {
            flushes,
            rows: Some(rows),
            seconds: Some(seconds),
        }
    }
}

/// The rows of each table among `lines`, in order of first appearance.
fn count_by_table(lines: &[Line]) -> Vec<(String, u64)> {
    let mut tables: Vec<(String, u64)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for line in lines {
        // Lines come in runs of one table: the last one first.
        if let Some((table, count)) = tables.last_mut()
            && *table == line.table
        {
            *count += 1;
            continue;
        }
        let at = *index.entry(&line.table).or_insert_with(|| {
            tables.push((line.table.clone(), 0));
            tables.len() - 1
        });
        tables[at].1 += 1;
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_lp::{Precision, parse};

    fn flush(database: &str, lines: &str) -> Vec<(String, Vec<Line>)> {
        let parsed = parse(lines, Precision::Nanosecond, 0);
        vec![(database.to_string(), parsed.lines)]
    }

    #[test]
    fn lag_counts_the_rows_a_trigger_wants_after_its_cursor() {
        let mut index = FlushIndex::default();
        index.record(5, &flush("a", "cpu f=1i 1\ncpu f=2i 2\nmem f=3i 3"));
        index.record(6, &flush("b", "cpu f=1i 1"));
        index.record(7, &flush("a", "cpu f=4i 4\nmem f=5i 5\ncpu f=6i 6"));
        let all = |_: &str| true;
        let cpu = |table: &str| table == "cpu";

        assert_eq!(index.lag(7, 7, "a", all).rows, Some(0));
        let behind = index.lag(4, 7, "a", all);
        assert_eq!((behind.flushes, behind.rows), (3, Some(6)));
        assert!(behind.seconds.is_some_and(|s| s >= 0.0));
        assert_eq!(index.lag(5, 7, "a", cpu).rows, Some(2));
        assert_eq!(index.lag(5, 7, "b", all).rows, Some(1));

        // Behind more counts than a lag reads: its rows unknown, its seconds known.
        for sequence in 8..=8 + MAX_COUNTS_READ as u64 {
            index.record(sequence, &flush("b", "cpu f=1i 1"));
        }
        let head = 8 + MAX_COUNTS_READ as u64;
        let far = index.lag(5, head, "a", all);
        assert_eq!((far.flushes, far.rows), (head - 5, None));
        assert!(far.seconds.is_some());
        let near = index.lag(head - 10, head, "b", all);
        assert_eq!(near.rows, Some(10));

        // Behind flushes it has no summary of: rows and seconds unknown.
        let unknown = index.lag(2, 7, "a", all);
        assert_eq!(
            (unknown.flushes, unknown.rows, unknown.seconds),
            (5, None, None)
        );
    }
}
