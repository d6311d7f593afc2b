//! Quotas: what one database may hold and run, so that one tenant's volume never becomes
//! another tenant's error.
//!
//! The server sets a default for each ([`Quotas`], from `sluice serve` flags whose
//! defaults are [`Quotas::DEFAULT`]); the admin may give a database its own
//! ([`QuotaOverrides`], kept in the catalog with the database: `sluice update database`).
//! A value is at least 1 and at most [`Quotas::MAX`]'s.

use crate::Error;
use serde::{Deserialize, Serialize};

/// The quotas of a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    /// Triggers it may have.
    pub triggers: u64,
    /// Bytes of plugin files its area may hold.
    pub plugin_bytes: u64,
    /// Invocations of its triggers that may run at once; a request trigger's call beyond
    /// it is refused (429), a WAL or schedule trigger's waits its turn.
    pub concurrent_invocations: u64,
    /// Bytes its triggers' caches and its shared cache may hold together.
    pub cache_bytes: u64,
    /// Bytes its own package environment may hold.
    pub package_bytes: u64,
    /// Lines of line protocol one invocation of its triggers may write, batched and
    /// immediate writes together; the write that would pass it is refused.
    pub writes_per_invocation: u64,
}

impl Quotas {
    /// A server's quotas unless its flags say otherwise.
    pub const DEFAULT: Self = Self {
        triggers: 100,
        plugin_bytes: 64 << 20,
        concurrent_invocations: 16,
        cache_bytes: 512 << 20,
        package_bytes: 256 << 20,
        writes_per_invocation: 1_000_000,
    };

    /// The largest value each may be given.
    pub const MAX: Self = Self {
        triggers: 10_000,
        plugin_bytes: 16 << 30,
        concurrent_invocations: 1_024,
        cache_bytes: 64 << 30,
        package_bytes: 16 << 30,
        writes_per_invocation: 1_000_000_000,
    };

    /// These quotas with `overrides` applied.
    pub fn with(&self, overrides: &QuotaOverrides) -> Self {
        Self {
            triggers: overrides.triggers.unwrap_or(self.triggers),
            plugin_bytes: overrides.plugin_bytes.unwrap_or(self.plugin_bytes),
            concurrent_invocations: overrides
                .concurrent_invocations
                .unwrap_or(self.concurrent_invocations),
            cache_bytes: overrides.cache_bytes.unwrap_or(self.cache_bytes),
            package_bytes: overrides.package_bytes.unwrap_or(self.package_bytes),
            writes_per_invocation: overrides
                .writes_per_invocation
                .unwrap_or(self.writes_per_invocation),
        }
    }

    /// Each quota with its name, as flags and messages name it.
    fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("max-triggers", self.triggers),
            ("max-plugin-bytes", self.plugin_bytes),
            ("max-concurrent-invocations", self.concurrent_invocations),
            ("max-cache-bytes", self.cache_bytes),
            ("max-package-bytes", self.package_bytes),
            ("max-writes-per-invocation", self.writes_per_invocation),
        ]
    }

    /// Refuses a value of 0 or over [`Quotas::MAX`]'s, naming it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQuota`].
    pub fn check(&self) -> Result<(), Error> {
        for ((name, value), (_, max)) in self.named().into_iter().zip(Self::MAX.named()) {
            if value == 0 || value > max {
                return Err(Error::InvalidQuota(format!(
                    "{name} must be from 1 to {max}, not {value}"
                )));
            }
        }
        Ok(())
    }
}

impl Default for Quotas {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A database's own quotas, where they differ from the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverrides {
    /// [`Quotas::triggers`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers: Option<u64>,
    /// [`Quotas::plugin_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_bytes: Option<u64>,
    /// [`Quotas::concurrent_invocations`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_invocations: Option<u64>,
    /// [`Quotas::cache_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_bytes: Option<u64>,
    /// [`Quotas::package_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_bytes: Option<u64>,
    /// [`Quotas::writes_per_invocation`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes_per_invocation: Option<u64>,
}

impl QuotaOverrides {
    /// Whether none is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Refuses a value of 0 or over [`Quotas::MAX`]'s.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQuota`], naming the quota.
    pub fn check(&self) -> Result<(), Error> {
        Quotas::MAX.with(self).check()
    }

    /// `name=value,…` of the quotas set, as `system.databases` shows them.
    pub fn describe(&self) -> String {
        let set = Quotas::MAX.with(self);
        let given = [
            self.triggers.is_some(),
            self.plugin_bytes.is_some(),
            self.concurrent_invocations.is_some(),
            self.cache_bytes.is_some(),
            self.package_bytes.is_some(),
            self.writes_per_invocation.is_some(),
        ];
        set.named()
            .into_iter()
            .zip(given)
            .filter(|(_, given)| *given)
            .map(|((name, value), _)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl crate::Catalog {
    /// Gives `database` the quotas `overrides` (replacing those it had).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQuota`] or [`Error::DatabaseNotFound`].
    pub fn set_quotas(&self, database: &str, overrides: QuotaOverrides) -> Result<(), Error> {
        overrides.check()?;
        let mut databases = self.write();
        let db = databases
            .get_mut(database)
            .ok_or_else(|| Error::DatabaseNotFound(database.to_string()))?;
        db.quotas = overrides;
        Ok(())
    }

    /// Adds `trigger` to `database` if the database then has at most `max_triggers`.
    ///
    /// # Errors
    ///
    /// [`Error::QuotaExceeded`], or those of [`Catalog::create_trigger`](crate::Catalog::create_trigger).
    pub fn create_trigger_within(
        &self,
        database: &str,
        trigger: crate::Trigger,
        max_triggers: u64,
    ) -> Result<(), Error> {
        let count = self.read().get(database).map_or(0, |db| db.triggers.len());
        if count as u64 >= max_triggers {
            return Err(Error::QuotaExceeded(format!(
                "database '{database}' has {count} triggers already: its max-triggers quota is \
                 {max_triggers}"
            )));
        }
        self.create_trigger(database, trigger)
    }

    /// The quotas `database` has of its own (none when there is no such database).
    pub fn quota_overrides(&self, database: &str) -> QuotaOverrides {
        self.read()
            .get(database)
            .map(|db| db.quotas)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_within_bounds_and_say_which_is_wrong() {
        let own = QuotaOverrides {
            triggers: Some(3),
            ..QuotaOverrides::default()
        };
        assert_eq!(Quotas::DEFAULT.with(&own).triggers, 3);
        assert_eq!(Quotas::DEFAULT.with(&own).plugin_bytes, 64 << 20);
        assert_eq!(own.describe(), "max-triggers=3");
        let zero = QuotaOverrides {
            concurrent_invocations: Some(0),
            ..QuotaOverrides::default()
        };
        assert_eq!(
            zero.check().map_err(|e| e.to_string()),
            Err("invalid quota: max-concurrent-invocations must be from 1 to 1024, not 0".into())
        );
        let huge = QuotaOverrides {
            triggers: Some(10_001),
            ..QuotaOverrides::default()
        };
        assert!(huge.check().is_err());
        assert!(Quotas::DEFAULT.check().is_ok() && Quotas::MAX.check().is_ok());

        let catalog = crate::Catalog::default();
        catalog.create_database("db").expect("created");
        catalog.set_quotas("db", own).expect("set");
        assert!(catalog.set_quotas("db", zero).is_err());
        assert!(catalog.set_quotas("nowhere", own).is_err());
        let restarted = crate::Catalog::from_bytes(&catalog.to_bytes()).expect("loads");
        assert_eq!(restarted.quota_overrides("db"), own, "kept in the catalog");
    }
}
