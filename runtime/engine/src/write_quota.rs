//! The lines one invocation may write: its database's `max-writes-per-invocation` quota,
//! counted over batched and immediate writes together on the host side, so that it holds
//! whatever the executor and however the guest groups its lines.

use std::sync::atomic::{AtomicU64, Ordering};

/// What is left of one invocation's quota of lines written.
pub(crate) struct WriteAllowance {
    database: String,
    quota: u64,
    written: AtomicU64,
}

impl WriteAllowance {
    /// `quota` lines for an invocation of a trigger of `database`.
    pub(crate) fn new(database: &str, quota: u64) -> Self {
        Self {
            database: database.to_string(),
            quota,
            written: AtomicU64::new(0),
        }
    }

    /// As many lines as anyone may write: for runs no database's quota applies to.
    pub(crate) fn unbounded() -> Self {
        Self::new("", u64::MAX)
    }

    /// Counts the lines of `line_protocol` (blank ones and `#` comments aside).
    ///
    /// # Errors
    ///
    /// They would take the invocation past its quota: nothing of them is counted, and the
    /// message names the quota.
    pub(crate) fn take(&self, line_protocol: &str) -> Result<(), String> {
        let lines = sluice_lp::lines(line_protocol)
            .filter(|line| {
                let line = line.trim();
                !line.is_empty() && !line.starts_with('#')
            })
            .count() as u64;
        self.written
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |written| {
                let after = written.saturating_add(lines);
                (after <= self.quota).then_some(after)
            })
            .map(drop)
            .map_err(|written| {
                format!(
                    "database '{}' allows {} lines written per invocation (its \
                     max-writes-per-invocation quota): this invocation wrote {written} and \
                     asked to write {lines} more",
                    self.database, self.quota
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::WriteAllowance;

    #[test]
    fn lines_are_counted_until_the_quota_and_a_refused_write_counts_nothing() {
        let allowance = WriteAllowance::new("a", 3);
        assert_eq!(allowance.take("m f=1\n\n# note\nm f=2\n"), Ok(()));
        let refused = allowance.take("m f=3\nm f=4").expect_err("over the quota");
        assert!(
            refused.contains("database 'a' allows 3 lines written per invocation")
                && refused.contains("wrote 2 and asked to write 2 more"),
            "{refused}"
        );
        assert_eq!(
            allowance.take("m f=\"two\nlines\" 1"),
            Ok(()),
            "one line, quoted"
        );
        assert!(allowance.take("m f=5").is_err());
        assert_eq!(WriteAllowance::unbounded().take("m f=1"), Ok(()));
    }
}
