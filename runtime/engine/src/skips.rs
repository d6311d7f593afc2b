//! The flushes a WAL trigger could not have, named: consecutive ones together, with what
//! they held of the trigger's database when that is known.

use crate::flush_log::RemovedRows;
use chrono::{DateTime, SecondsFormat};

/// Why a flush was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Its WAL file was removed before the trigger came to it: what it held for the
    /// trigger, table by table, if known.
    Removed(Option<Vec<RemovedRows>>),
    /// Its WAL file is not there: lost, or removed outside the server.
    Missing,
    /// Its WAL file could not be read.
    Unreadable(String),
}

/// One text per run of consecutive `skips` (by sequence) skipped for the same kind of
/// reason, saying which flushes, why, and what they held.
pub fn describe(skips: &[(u64, Skip)]) -> Vec<String> {
    let mut texts = Vec::new();
    let mut start = 0;
    for end in 1..=skips.len() {
        let continues = end < skips.len()
            && skips[end].0 == skips[end - 1].0 + 1
            && same_kind(&skips[end].1, &skips[start].1);
        if !continues {
            texts.push(describe_run(&skips[start..end]));
            start = end;
        }
    }
    texts
}

fn same_kind(a: &Skip, b: &Skip) -> bool {
    match (a, b) {
        (Skip::Removed(a), Skip::Removed(b)) => a.is_some() == b.is_some(),
        (Skip::Missing, Skip::Missing) => true,
        (Skip::Unreadable(a), Skip::Unreadable(b)) => a == b,
        _ => false,
    }
}

fn describe_run(run: &[(u64, Skip)]) -> String {
    let (first, last) = (run[0].0, run[run.len() - 1].0);
    let flushes = if first == last {
        format!("flush {first} was skipped")
    } else {
        format!("flushes {first} to {last} were skipped")
    };
    match &run[0].1 {
        Skip::Unreadable(why) => format!("{flushes}: the WAL cannot be read ({why})"),
        Skip::Missing => format!(
            "{flushes}: not in the WAL (lost, or removed outside the server); what they held \
             is not known"
        ),
        Skip::Removed(_) => {
            let held = match held(run) {
                Some(held) => held,
                None => "what they held is not known: their notes cannot be read".to_string(),
            };
            format!(
                "{flushes}: their WAL files were removed before the trigger came to them, as \
                 it fell behind by more than the WAL retention (--wal-retention-mib); {held}"
            )
        }
    }
}

/// What the removed flushes of `run` held, if every one's is known.
fn held(run: &[(u64, Skip)]) -> Option<String> {
    let (mut tables, mut rows) = (Vec::<&str>::new(), 0);
    let (mut min_time_ns, mut max_time_ns) = (i64::MAX, i64::MIN);
    for (_, skip) in run {
        let Skip::Removed(Some(held)) = skip else {
            return None;
        };
        for table in held {
            if !tables.contains(&table.table.as_str()) {
                tables.push(&table.table);
            }
            rows += table.rows;
            min_time_ns = min_time_ns.min(table.min_time_ns);
            max_time_ns = max_time_ns.max(table.max_time_ns);
        }
    }
    let time =
        |ns: i64| DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::AutoSi, true);
    Some(format!(
        "they held {rows} rows of table{} {}, from {} to {}",
        if tables.len() == 1 { "" } else { "s" },
        tables.join(", "),
        time(min_time_ns),
        time(max_time_ns)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removed(table: &str, rows: u64, from_s: i64) -> Skip {
        Skip::Removed(Some(vec![RemovedRows {
            table: table.to_string(),
            rows,
            min_time_ns: from_s * 1_000_000_000,
            max_time_ns: (from_s + 1) * 1_000_000_000,
        }]))
    }

    #[test]
    fn consecutive_skips_are_one_text_with_what_they_held() {
        let skips = [
            (3, removed("cpu", 10, 0)),
            (4, removed("mem", 5, 60)),
            (5, Skip::Unreadable("damaged".into())),
            (7, Skip::Removed(None)),
            (8, removed("cpu", 1, 0)),
            (9, Skip::Missing),
        ];
        let texts = describe(&skips);
        assert_eq!(texts.len(), 5, "{texts:?}");
        assert_eq!(
            texts[0],
            "flushes 3 to 4 were skipped: their WAL files were removed before the trigger came \
             to them, as it fell behind by more than the WAL retention (--wal-retention-mib); \
             they held 15 rows of tables cpu, mem, from 1970-01-01T00:00:00Z to \
             1970-01-01T00:01:01Z"
        );
        assert_eq!(
            texts[1],
            "flush 5 was skipped: the WAL cannot be read (damaged)"
        );
        assert!(texts[2].starts_with("flush 7 was skipped"), "{}", texts[2]);
        assert!(
            texts[2].ends_with("their notes cannot be read"),
            "{}",
            texts[2]
        );
        assert!(texts[3].starts_with("flush 8 was skipped"), "{}", texts[3]);
        assert!(
            texts[4].starts_with("flush 9 was skipped: not in the WAL"),
            "{}",
            texts[4]
        );
        assert!(describe(&[]).is_empty());
    }
}
