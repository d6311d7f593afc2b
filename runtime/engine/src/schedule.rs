//! When schedule triggers fire: `every:` at multiples of its interval since the epoch,
//! `cron:` at the expression's instants (UTC), both as upstream.
//!
//! Upstream runs every missed instant back to back after a long run; here that holds up
//! to [`MAX_CATCH_UP`] missed instants, and beyond it they are all skipped, with a log
//! line, and the trigger goes on at its next instant.

use chrono::{DateTime, Utc};
use sluice_catalog::TriggerSpec;
use std::str::FromStr;

/// Missed instants run after a delay; older ones are skipped.
pub const MAX_CATCH_UP: usize = 10;

/// The next instant after now of the cron `expression` (6 or 7 fields, seconds first,
/// UTC): the call time of a schedule test.
///
/// # Errors
///
/// The expression is invalid, or never fires again.
pub fn next_cron_instant(expression: &str) -> Result<DateTime<Utc>, String> {
    let schedule = cron::Schedule::from_str(expression).map_err(|e| {
        format!("invalid cron expression `{expression}` (6 or 7 fields, seconds first): {e}")
    })?;
    schedule
        .upcoming(Utc)
        .next()
        .ok_or_else(|| format!("cron expression `{expression}` never fires again"))
}

/// The planned instants of a schedule trigger.
pub enum Schedule {
    /// `every:`, in milliseconds (at least 1).
    Every(i64),
    /// `cron:`.
    Cron(Box<cron::Schedule>),
}

impl Schedule {
    /// The schedule of `spec`; `None` for triggers that are not schedules.
    pub fn of(spec: &TriggerSpec) -> Option<Self> {
        match spec {
            TriggerSpec::Every { duration } => Some(Self::Every(
                i64::try_from(duration.as_millis())
                    .unwrap_or(i64::MAX)
                    .max(1),
            )),
            TriggerSpec::Schedule { schedule } => cron::Schedule::from_str(schedule)
                .ok()
                .map(|s| Self::Cron(Box::new(s))),
            _ => None,
        }
    }

    /// The first planned instant strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Every(ms) => {
                let next = (after.timestamp_millis().div_euclid(*ms) + 1).checked_mul(*ms)?;
                DateTime::from_timestamp_millis(next)
            }
            Self::Cron(schedule) => schedule.after(&after).next(),
        }
    }

    /// The instant to fire at after `planned` fired, at `now`, and how many planned
    /// instants are skipped. Up to [`MAX_CATCH_UP`] missed instants run back to back;
    /// beyond that all missed ones are skipped and the next future instant is planned.
    pub fn following(
        &self,
        planned: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, usize)> {
        let next = self.next_after(planned)?;
        if next > now {
            return Some((next, 0));
        }
        // Count the missed instants, without walking an unbounded number of them.
        let mut missed = 1;
        let mut last = next;
        while missed <= MISSED_COUNT_LIMIT {
            match self.next_after(last) {
                Some(later) if later <= now => {
                    missed += 1;
                    last = later;
                }
                _ => break,
            }
        }
        if missed <= MAX_CATCH_UP {
            Some((next, 0))
        } else {
            Some((self.next_after(now)?, missed))
        }
    }
}

/// Missed instants are counted up to this many.
const MISSED_COUNT_LIMIT: usize = 100_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).expect("in range")
    }

    #[test]
    fn every_fires_at_multiples_of_its_interval() {
        let schedule =
            Schedule::of(&TriggerSpec::parse("every:10s").expect("parses")).expect("a schedule");
        assert_eq!(
            schedule.next_after(at(1_700_000_003_000)),
            Some(at(1_700_000_010_000))
        );
        assert_eq!(
            schedule.next_after(at(1_700_000_010_000)),
            Some(at(1_700_000_020_000)),
            "strictly after"
        );
    }

    #[test]
    fn cron_fires_at_its_instants_in_utc() {
        let schedule = Schedule::of(&TriggerSpec::parse("cron:0 30 * * * *").expect("parses"))
            .expect("a schedule");
        let now = DateTime::parse_from_rfc3339("2026-01-01T10:31:00Z")
            .expect("time")
            .to_utc();
        let next = schedule.next_after(now).expect("next");
        assert_eq!(next.to_rfc3339(), "2026-01-01T11:30:00+00:00");
    }

    #[test]
    fn missed_instants_are_caught_up_but_bounded() {
        let schedule = Schedule::Every(1_000);
        assert_eq!(
            schedule.following(at(5_000), at(5_500)),
            Some((at(6_000), 0)),
            "on time"
        );
        assert_eq!(
            schedule.following(at(5_000), at(8_200)),
            Some((at(6_000), 0)),
            "three missed: all run"
        );
        assert_eq!(
            schedule.following(at(5_000), at(30_500)),
            Some((at(31_000), 25)),
            "25 missed: skipped"
        );
    }
}
