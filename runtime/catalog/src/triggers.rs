//! Processing-engine triggers: what fires a plugin, with which settings, and whether it
//! is enabled. A trigger belongs to a database and is kept in the catalog with it.
//!
//! [`TriggerSpec::parse`] reads upstream's grammar (`table:NAME`, `all_tables`,
//! `cron:EXPR`, `every:DURATION`, `request:PATH`) with upstream's error texts, and refuses
//! what upstream accepts only to fail later: `every:` under a millisecond (upstream's
//! scheduler divides by zero).

use crate::{Access, DatabaseRef, Error, HostGrant, TriggerId};
use serde::{Deserialize, Serialize};
pub use sluice_plugin_api::LimitOverrides;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

/// When a trigger fires. Serialises as upstream's system tables show it, e.g.
/// `{"single_table_wal_write":{"table_name":"cpu"}}` or `"all_tables_wal_write"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerSpec {
    /// Each WAL flush's rows of one table: `table:NAME`.
    SingleTableWalWrite {
        /// The table; it need not exist yet.
        table_name: String,
    },
    /// Each WAL flush's rows of every table: `all_tables`.
    AllTablesWalWrite,
    /// A cron schedule, 6 or 7 fields, UTC: `cron:EXPR`.
    Schedule {
        /// The expression.
        schedule: String,
    },
    /// Every so long, aligned to multiples of the interval since the epoch: `every:10s`.
    Every {
        /// The interval: at least 1 ms, at most a year.
        duration: Duration,
    },
    /// An HTTP request to `/api/v3/engine/PATH`: `request:PATH`.
    RequestPath {
        /// The path after `/api/v3/engine/`; unique across the server.
        path: String,
    },
}

/// The kind of plugin a trigger runs, named as upstream names it in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginType {
    /// `process_writes`.
    WalRows,
    /// `process_scheduled_call`.
    Schedule,
    /// `process_request`.
    Request,
}

impl std::fmt::Display for PluginType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::WalRows => "WalRows",
            Self::Schedule => "Schedule",
            Self::Request => "Request",
        })
    }
}

/// A trigger specification that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to parse trigger from {input}{}", context.as_ref().map(|c| format!(": {c}")).unwrap_or_default())]
pub struct TriggerSpecError {
    input: String,
    context: Option<String>,
}

/// The longest `every:` interval, as upstream: one year of 365.25 days.
const MAX_EVERY: Duration = Duration::from_secs(31_557_600);

impl TriggerSpec {
    /// Parses upstream's trigger specification grammar.
    ///
    /// # Errors
    ///
    /// [`TriggerSpecError`], whose text is upstream's: `failed to parse trigger from
    /// {input}` and, where upstream gives one, `: {context}`.
    pub fn parse(text: &str) -> Result<Self, TriggerSpecError> {
        let input = text.trim();
        let fail = |context: Option<&str>| TriggerSpecError {
            input: input.to_string(),
            context: context.map(str::to_string),
        };
        // Upstream strips repeated prefixes (`table:table:x` is `x`); so does this.
        if input.starts_with("table:") {
            let name = input.trim_start_matches("table:").trim();
            if name.is_empty() {
                return Err(fail(Some("table name is empty")));
            }
            return Ok(Self::SingleTableWalWrite {
                table_name: name.to_string(),
            });
        }
        if input == "all_tables" {
            return Ok(Self::AllTablesWalWrite);
        }
        if input.starts_with("cron:") {
            let expression = input.trim_start_matches("cron:").trim();
            if expression.is_empty() || cron::Schedule::from_str(expression).is_err() {
                return Err(fail(None));
            }
            return Ok(Self::Schedule {
                schedule: expression.to_string(),
            });
        }
        if input.starts_with("every:") {
            let duration = humantime::parse_duration(input.trim_start_matches("every:").trim())
                .map_err(|_| fail(Some("couldn't parse to duration")))?;
            if duration > MAX_EVERY {
                return Err(fail(Some("don't support every schedules of over 1 year")));
            }
            if duration < Duration::from_millis(1) {
                return Err(fail(Some("every schedules must be at least 1ms")));
            }
            return Ok(Self::Every { duration });
        }
        if input.starts_with("request:") {
            let path = input.trim_start_matches("request:").trim();
            if path.is_empty() {
                return Err(fail(None));
            }
            return Ok(Self::RequestPath {
                path: path.to_string(),
            });
        }
        Err(fail(Some(
            "expect one of the following forms: 'table:<TABLE_NAME>', 'all_tables', 'cron:<CRON_EXPRESSION>', 'every:<DURATION>', or 'request:<PATH>'",
        )))
    }

    /// The kind of plugin this trigger runs.
    pub fn plugin_type(&self) -> PluginType {
        match self {
            Self::SingleTableWalWrite { .. } | Self::AllTablesWalWrite => PluginType::WalRows,
            Self::Schedule { .. } | Self::Every { .. } => PluginType::Schedule,
            Self::RequestPath { .. } => PluginType::Request,
        }
    }

    /// The request path, for request triggers.
    pub fn request_path(&self) -> Option<&str> {
        match self {
            Self::RequestPath { path } => Some(path),
            _ => None,
        }
    }
}

impl std::fmt::Display for TriggerSpec {
    /// The canonical text: `table:cpu`, `all_tables`, `cron:EXPR`, `every:1h 30m`,
    /// `request:PATH`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SingleTableWalWrite { table_name } => write!(f, "table:{table_name}"),
            Self::AllTablesWalWrite => f.write_str("all_tables"),
            Self::Schedule { schedule } => write!(f, "cron:{schedule}"),
            Self::Every { duration } => {
                write!(f, "every:{}", humantime::format_duration(*duration))
            }
            Self::RequestPath { path } => write!(f, "request:{path}"),
        }
    }
}

/// What a trigger does when its plugin fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorBehavior {
    /// Log the error and go on.
    #[default]
    Log,
    /// Run the same input again, a bounded number of times with backoff.
    Retry,
    /// Disable the trigger, in the catalog.
    Disable,
}

impl ErrorBehavior {
    /// `log`, `retry` or `disable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Retry => "retry",
            Self::Disable => "disable",
        }
    }
}

/// Where a WAL trigger without a place in the WAL starts reading it: when created, and
/// when enabled again after it was disabled other than by its `error_behavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalStart {
    /// At the WAL's head: the flushes written from then on.
    #[default]
    Head,
    /// At the oldest flush the WAL still holds (those since the last snapshot, and those
    /// kept for other WAL triggers within the WAL retention).
    Earliest,
}

impl WalStart {
    fn is_head(&self) -> bool {
        *self == Self::Head
    }
}

/// How a trigger runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TriggerSettings {
    /// Let invocations of this trigger overlap.
    pub run_async: bool,
    /// What to do when the plugin fails.
    pub error_behavior: ErrorBehavior,
    /// Not upstream's: how many invocations of a `run_async` trigger may run at once
    /// (its database's quota of invocations at once bounds them too); a request beyond
    /// it is refused (429), a WAL or schedule call waits. `None`: only the database's
    /// quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u64>,
    /// Not upstream's: where a WAL trigger without a place in the WAL starts.
    #[serde(default, skip_serializing_if = "WalStart::is_head")]
    pub wal_start: WalStart,
}

/// A trigger as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// Which trigger: given by the catalog when the trigger is created (whatever the
    /// creator put here), kept by updates.
    #[serde(default)]
    pub id: TriggerId,
    /// Unique within its database.
    pub trigger_name: String,
    /// The plugin: a path under the plugin directory, or `gh:…`, as given.
    pub plugin_filename: String,
    /// Where `plugin_filename` is: the server's shared plugins, or its database's own.
    #[serde(default, skip_serializing_if = "PluginArea::is_shared")]
    pub plugin_area: PluginArea,
    /// When it fires.
    pub trigger: TriggerSpec,
    /// How it runs.
    pub trigger_settings: TriggerSettings,
    /// Arguments given to the plugin; `None` when none were given.
    pub trigger_arguments: Option<BTreeMap<String, String>>,
    /// A disabled trigger does not fire.
    pub disabled: bool,
    /// Databases besides its own that its plugin may use, when given
    /// (`--grant-database`): they narrow its [`Reach`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted_databases: Vec<String>,
    /// Where its plugin may send HTTP requests (`--allow-host`), within the server's
    /// allow-list; nowhere when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<HostGrant>,
    /// Which databases besides its own its plugin may query and write, from what its
    /// creator could do when it was created.
    #[serde(default)]
    pub reach: Reach,
    /// A request trigger anyone may call, without a token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
    /// Its own limits, where they differ from the server's.
    #[serde(default, skip_serializing_if = "LimitOverrides::is_empty")]
    pub limits: LimitOverrides,
    /// What runs its plugin.
    #[serde(default, skip_serializing_if = "Runtime::is_wasm")]
    pub runtime: Runtime,
}

/// What runs a trigger's plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    /// The WebAssembly sandbox: the default, and the only runtime a database token may
    /// choose.
    #[default]
    Wasm,
    /// Native CPython in the server's process, as upstream: no sandbox. Enabled by the
    /// operator (`--plugin-runtimes wasm,pyo3`), chosen by the admin.
    Pyo3,
}

impl Runtime {
    /// Whether it is [`Runtime::Wasm`].
    pub fn is_wasm(&self) -> bool {
        *self == Self::Wasm
    }

    /// Its name, as requests, flags and the system tables spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wasm => "wasm",
            Self::Pyo3 => "pyo3",
        }
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which databases besides its own a trigger's plugin may query and write. Its own it
/// always may: a trigger acts for its database.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// Its `granted_databases`, nothing more: triggers of catalogs written before the
    /// creator was recorded keep what they could do then.
    #[default]
    Granted,
    /// What its creator could: the admin every database (as upstream, so library plugins
    /// that write to a database named in their arguments run unchanged), a database
    /// token the databases it may read (to query) and write (to write). Granted
    /// databases, when given, narrow it.
    Creator(Access),
}

/// Where a trigger's plugin file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginArea {
    /// The server's plugin directory: the admin's files and the repository's copies,
    /// which tenants may run but not change.
    #[default]
    Shared,
    /// The trigger's database's own plugins, which tokens that manage it upload.
    Database,
}

impl PluginArea {
    /// Whether it is [`PluginArea::Shared`].
    pub fn is_shared(&self) -> bool {
        *self == Self::Shared
    }

    /// Its name, as the system tables show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Database => "database",
        }
    }
}

/// What a plugin does with a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Queries it.
    Query,
    /// Writes to it.
    Write,
}

impl Trigger {
    /// Whether the plugin of this trigger of `own` may `use` `database`. Its own
    /// database too only as its creator could: a token that may manage a database but
    /// not read it makes no trigger that reads it.
    pub fn reaches(&self, own: &str, database: &str, using: Use) -> bool {
        let granted = database == own || self.granted_databases.iter().any(|g| g == database);
        match &self.reach {
            Reach::Granted => granted,
            Reach::Creator(access) => {
                let allowed = match using {
                    Use::Query => access.can_read(database),
                    Use::Write => access.can_write(database),
                };
                allowed && (granted || self.granted_databases.is_empty())
            }
        }
    }
}

impl Reach {
    /// Whether a database token created the trigger (a tenant's).
    pub fn is_tenants(&self) -> bool {
        matches!(self, Self::Creator(Access::Scoped(_)))
    }

    /// As `system.processing_engine_triggers` shows it: `all databases`, the creator's
    /// permissions (`db:a,b:read,write …`), or `granted databases`.
    pub fn describe(&self) -> String {
        match self {
            Self::Granted => "granted databases".into(),
            Self::Creator(Access::Admin) => "all databases".into(),
            // What the plugin may do with them: read and write, not the token's others.
            Self::Creator(Access::Scoped(grants)) => grants
                .iter()
                .filter(|g| g.read || g.write)
                .map(|g| {
                    let uses = crate::Grant {
                        manage: false,
                        invoke: false,
                        metrics: false,
                        ..g.clone()
                    };
                    uses.describe()
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// The triggers of `database`, to change.
fn triggers_of<'a>(
    databases: &'a mut BTreeMap<String, crate::Database>,
    database: &str,
) -> Result<&'a mut BTreeMap<String, Trigger>, Error> {
    databases
        .get_mut(database)
        .map(|db| &mut db.triggers)
        .ok_or_else(|| Error::DatabaseNotFound(database.to_string()))
}

impl crate::Catalog {
    /// Adds `trigger` to `database`.
    ///
    /// # Errors
    ///
    /// [`Error::DatabaseNotFound`]; [`Error::AlreadyExists`] when the database has a
    /// trigger of that name; [`Error::RequestPathInUse`] when any trigger of any database
    /// serves the same request path.
    pub fn create_trigger(&self, database: &str, mut trigger: Trigger) -> Result<(), Error> {
        let mut databases = self.write();
        if let Some(path) = trigger.trigger.request_path() {
            for (name, db) in databases.iter() {
                if let Some(other) = db
                    .triggers
                    .values()
                    .find(|t| t.trigger.request_path() == Some(path))
                {
                    return Err(Error::RequestPathInUse {
                        path: path.to_string(),
                        database: name.clone(),
                        trigger: other.trigger_name.clone(),
                    });
                }
            }
        }
        for granted in &trigger.granted_databases {
            crate::names::validate_database_name(granted)?;
        }
        let triggers = triggers_of(&mut databases, database)?;
        if triggers.contains_key(&trigger.trigger_name) {
            return Err(Error::AlreadyExists);
        }
        trigger.id = self.ids().trigger();
        triggers.insert(trigger.trigger_name.clone(), trigger);
        Ok(())
    }

    /// Removes a trigger and returns it.
    ///
    /// # Errors
    ///
    /// [`Error::DatabaseNotFound`], [`Error::TriggerNotFound`], or
    /// [`Error::TriggerRunning`] when it is enabled and `force` is false.
    pub fn delete_trigger(
        &self,
        database: &str,
        name: &str,
        force: bool,
    ) -> Result<Trigger, Error> {
        let mut databases = self.write();
        let triggers = triggers_of(&mut databases, database)?;
        match triggers.get(name) {
            None => Err(Error::TriggerNotFound(name.to_string())),
            Some(trigger) if !trigger.disabled && !force => {
                Err(Error::TriggerRunning(name.to_string()))
            }
            Some(_) => triggers
                .remove(name)
                .ok_or_else(|| Error::TriggerNotFound(name.to_string())),
        }
    }

    /// Enables or disables a trigger; returns whether that changed anything.
    ///
    /// # Errors
    ///
    /// [`Error::DatabaseNotFound`] or [`Error::TriggerNotFound`].
    pub fn set_trigger_disabled(
        &self,
        database: &str,
        name: &str,
        disabled: bool,
    ) -> Result<bool, Error> {
        let mut databases = self.write();
        let trigger = triggers_of(&mut databases, database)?
            .get_mut(name)
            .ok_or_else(|| Error::TriggerNotFound(name.to_string()))?;
        let changed = trigger.disabled != disabled;
        trigger.disabled = disabled;
        Ok(changed)
    }

    /// Disables the trigger `id` of `database` (`error_behavior` disable): not another
    /// trigger given its name since.
    ///
    /// # Errors
    ///
    /// [`Error::DatabaseNotFound`], or [`Error::TriggerNotFound`] when it is gone.
    pub fn disable_trigger(&self, database: &str, id: TriggerId) -> Result<(), Error> {
        let mut databases = self.write();
        let trigger = triggers_of(&mut databases, database)?
            .values_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| Error::TriggerNotFound(format!("id {id}")))?;
        trigger.disabled = true;
        Ok(())
    }

    /// The triggers of `database`, by name; `None` when there is no such database.
    pub fn triggers(&self, database: &str) -> Option<Vec<Trigger>> {
        self.read()
            .get(database)
            .map(|db| db.triggers.values().cloned().collect())
    }

    /// The enabled trigger serving request path `path`, with its database.
    pub fn request_trigger(&self, path: &str) -> Option<(DatabaseRef, Trigger)> {
        self.enabled_triggers_where(|t| t.trigger.request_path() == Some(path))
            .next()
    }

    /// Every enabled trigger of every database, with its database.
    pub fn enabled_triggers(&self) -> Vec<(DatabaseRef, Trigger)> {
        self.enabled_triggers_where(|_| true).collect()
    }

    fn enabled_triggers_where(
        &self,
        wanted: impl Fn(&Trigger) -> bool,
    ) -> impl Iterator<Item = (DatabaseRef, Trigger)> {
        let databases = self.read();
        let mut found = Vec::new();
        for (name, db) in databases.iter() {
            for trigger in db.triggers.values().filter(|t| !t.disabled && wanted(t)) {
                let database = DatabaseRef {
                    id: db.id,
                    name: name.clone(),
                };
                found.push((database, trigger.clone()));
            }
        }
        found.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        TriggerSpec::parse(text).expect_err("refused").to_string()
    }

    #[test]
    fn upstream_grammar_and_canonical_text() {
        let cases = [
            ("table:cpu", "table:cpu"),
            ("  table:table: cpu ", "table:cpu"),
            ("all_tables", "all_tables"),
            ("cron:0 */5 * * * *", "cron:0 */5 * * * *"),
            ("every:90m", "every:1h 30m"),
            ("every:1.5h", "every:1h 30m"),
            ("request:hooks/alert", "request:hooks/alert"),
        ];
        for (input, canonical) in cases {
            let spec = TriggerSpec::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(spec.to_string(), canonical);
            assert_eq!(TriggerSpec::parse(&spec.to_string()), Ok(spec));
        }
        assert_eq!(
            TriggerSpec::parse("table:cpu").map(|s| s.plugin_type()),
            Ok(PluginType::WalRows)
        );
        assert_eq!(
            TriggerSpec::parse("every:1s").map(|s| s.plugin_type()),
            Ok(PluginType::Schedule)
        );
        assert_eq!(
            TriggerSpec::parse("request:x").map(|s| s.plugin_type()),
            Ok(PluginType::Request)
        );
    }

    #[test]
    fn upstream_error_texts() {
        assert_eq!(
            error("table:"),
            "failed to parse trigger from table:: table name is empty"
        );
        assert_eq!(
            error("every:abc"),
            "failed to parse trigger from every:abc: couldn't parse to duration"
        );
        assert_eq!(
            error("every:2y"),
            "failed to parse trigger from every:2y: don't support every schedules of over 1 year"
        );
        assert_eq!(
            error("cron:* * * * *"),
            "failed to parse trigger from cron:* * * * *",
            "5-field crontab"
        );
        assert_eq!(error("request: "), "failed to parse trigger from request:");
        assert!(error("schedule:every 1m").ends_with("or 'request:<PATH>'"));
        assert!(
            error("Table:cpu").starts_with("failed to parse trigger from Table:cpu: expect one of")
        );
    }

    #[test]
    fn intervals_under_a_millisecond_are_refused() {
        assert_eq!(
            error("every:0s"),
            "failed to parse trigger from every:0s: every schedules must be at least 1ms"
        );
        assert_eq!(
            error("every:500us"),
            "failed to parse trigger from every:500us: every schedules must be at least 1ms"
        );
        assert!(TriggerSpec::parse("every:1ms").is_ok());
    }

    #[test]
    fn serialises_as_upstream_system_tables_show_it() {
        let json = |text: &str| {
            serde_json::to_string(&TriggerSpec::parse(text).expect("parses")).expect("serialises")
        };
        assert_eq!(json("all_tables"), r#""all_tables_wal_write""#);
        assert_eq!(
            json("table:cpu"),
            r#"{"single_table_wal_write":{"table_name":"cpu"}}"#
        );
        assert_eq!(
            json("cron:* * * * * *"),
            r#"{"schedule":{"schedule":"* * * * * *"}}"#
        );
        assert_eq!(
            json("every:10s"),
            r#"{"every":{"duration":{"secs":10,"nanos":0}}}"#
        );
        assert_eq!(json("request:foo"), r#"{"request_path":{"path":"foo"}}"#);
    }
}

#[cfg(test)]
mod catalog_tests {
    use super::*;
    use crate::{Catalog, Error};

    fn trigger(name: &str, spec: &str) -> Trigger {
        Trigger {
            id: TriggerId::default(),
            trigger_name: name.into(),
            plugin_filename: "p.py".into(),
            plugin_area: PluginArea::Shared,
            trigger: TriggerSpec::parse(spec).expect("parses"),
            trigger_settings: TriggerSettings::default(),
            trigger_arguments: None,
            disabled: false,
            granted_databases: Vec::new(),
            allowed_hosts: Vec::new(),
            reach: Reach::default(),
            public: false,
            limits: LimitOverrides::default(),
            runtime: Runtime::default(),
        }
    }

    #[test]
    fn a_trigger_reaches_what_its_creator_could_narrowed_by_its_grants() {
        let tenant = Access::Scoped(vec![
            crate::Grant {
                databases: vec!["a".into()],
                read: true,
                write: true,
                manage: true,
                invoke: false,
                metrics: false,
            },
            crate::Grant {
                databases: vec!["shared".into()],
                read: true,
                write: false,
                manage: false,
                invoke: false,
                metrics: false,
            },
        ]);
        let of = |reach: Reach, granted: &[&str]| {
            let mut t = trigger("t", "all_tables");
            t.reach = reach;
            t.granted_databases = granted.iter().map(|g| g.to_string()).collect();
            t
        };
        let uses = |t: &Trigger, database: &str| {
            (
                t.reaches("a", database, Use::Query),
                t.reaches("a", database, Use::Write),
            )
        };
        let admins = of(Reach::Creator(Access::Admin), &[]);
        assert_eq!(uses(&admins, "anything"), (true, true), "as upstream");
        let narrowed = of(Reach::Creator(Access::Admin), &["shared"]);
        assert_eq!(uses(&narrowed, "shared"), (true, true));
        assert_eq!(uses(&narrowed, "anything"), (false, false));
        let tenants = of(Reach::Creator(tenant.clone()), &[]);
        assert_eq!(uses(&tenants, "a"), (true, true), "its own");
        let manage_only = Access::Scoped(vec![crate::Grant {
            databases: vec!["a".into()],
            read: false,
            write: false,
            manage: true,
            invoke: false,
            metrics: false,
        }]);
        let managers = of(Reach::Creator(manage_only), &[]);
        assert_eq!(uses(&managers, "a"), (false, false), "not even its own");
        assert_eq!(uses(&tenants, "shared"), (true, false), "read only");
        assert_eq!(uses(&tenants, "b"), (false, false));
        let granted_more = of(Reach::Creator(tenant), &["b"]);
        assert_eq!(
            uses(&granted_more, "b"),
            (false, false),
            "never past the creator"
        );
        let older = of(Reach::Granted, &["b"]);
        assert_eq!(
            (uses(&older, "b"), uses(&older, "c")),
            ((true, true), (false, false))
        );
        assert_eq!(tenants.reach.describe(), "db:a:read,write db:shared:read");
        assert_eq!(admins.reach.describe(), "all databases");
    }

    #[test]
    fn an_error_disables_its_own_trigger_not_one_given_its_name_since() {
        let catalog = Catalog::default();
        catalog.create_database("db").expect("created");
        catalog
            .create_trigger("db", trigger("t", "all_tables"))
            .expect("created");
        let first = catalog.triggers("db").expect("exists")[0].id;
        catalog.delete_trigger("db", "t", true).expect("deleted");
        catalog
            .create_trigger("db", trigger("t", "all_tables"))
            .expect("created again");
        assert!(matches!(
            catalog.disable_trigger("db", first),
            Err(Error::TriggerNotFound(_))
        ));
        let second = catalog.triggers("db").expect("exists")[0].clone();
        assert!(!second.disabled, "the new one runs on");
        catalog.disable_trigger("db", second.id).expect("disabled");
        assert!(catalog.triggers("db").expect("exists")[0].disabled);
    }

    #[test]
    fn grants_end_with_the_granted_database() {
        let catalog = Catalog::default();
        for name in ["db", "metrics", "other"] {
            catalog.create_database(name).expect("created");
        }
        let mut granted = trigger("t", "all_tables");
        granted.granted_databases = vec!["metrics".into(), "other".into()];
        catalog.create_trigger("db", granted).expect("created");
        let mut bad = trigger("u", "all_tables");
        bad.granted_databases = vec!["no such name".into()];
        assert!(catalog.create_trigger("db", bad).is_err());

        catalog.delete_database("metrics").expect("deleted");
        catalog.create_database("metrics").expect("created again");
        let triggers = catalog.triggers("db").expect("db");
        assert_eq!(triggers[0].granted_databases, vec!["other".to_string()]);
        assert!(!triggers[0].disabled);
        // The last grant gone: disabled, never widened to all its creator could.
        catalog.delete_database("other").expect("deleted");
        let triggers = catalog.triggers("db").expect("db");
        assert!(triggers[0].granted_databases.is_empty() && triggers[0].disabled);
    }

    #[test]
    fn create_enable_disable_delete() {
        let catalog = Catalog::default();
        assert_eq!(
            catalog.create_trigger("db", trigger("t", "all_tables")),
            Err(Error::DatabaseNotFound("db".into()))
        );
        catalog.create_database("db").expect("created");
        catalog
            .create_trigger("db", trigger("t", "all_tables"))
            .expect("created");
        assert_eq!(
            catalog.create_trigger("db", trigger("t", "table:cpu")),
            Err(Error::AlreadyExists)
        );
        assert_eq!(
            catalog.delete_trigger("db", "t", false),
            Err(Error::TriggerRunning("t".into()))
        );
        assert_eq!(catalog.set_trigger_disabled("db", "t", true), Ok(true));
        assert_eq!(
            catalog.set_trigger_disabled("db", "t", true),
            Ok(false),
            "already disabled is no error"
        );
        assert_eq!(
            catalog
                .delete_trigger("db", "t", false)
                .map(|t| t.trigger_name),
            Ok("t".into())
        );
        assert_eq!(
            catalog.delete_trigger("db", "t", true),
            Err(Error::TriggerNotFound("t".into()))
        );
        assert_eq!(
            catalog.set_trigger_disabled("db", "nope", false),
            Err(Error::TriggerNotFound("nope".into()))
        );
    }

    #[test]
    fn request_paths_are_unique_across_databases_and_triggers_survive_a_snapshot() {
        let catalog = Catalog::default();
        catalog.create_database("a").expect("created");
        catalog.create_database("b").expect("created");
        catalog
            .create_trigger("a", trigger("hook", "request:alert"))
            .expect("created");
        let found = catalog
            .request_trigger("alert")
            .map(|(db, t)| (db.name, t.trigger_name));
        assert_eq!(found, Some(("a".into(), "hook".into())));
        catalog
            .set_trigger_disabled("a", "hook", true)
            .expect("disabled");
        assert_eq!(
            catalog.request_trigger("alert"),
            None,
            "a disabled trigger serves nothing"
        );
        catalog
            .set_trigger_disabled("a", "hook", false)
            .expect("enabled");
        let taken = catalog.create_trigger("b", trigger("other", "request:alert"));
        assert_eq!(
            taken,
            Err(Error::RequestPathInUse {
                path: "alert".into(),
                database: "a".into(),
                trigger: "hook".into()
            })
        );
        catalog
            .create_trigger("b", trigger("other", "request:alert2"))
            .expect("another path is free");
        catalog
            .delete_trigger("a", "hook", true)
            .expect("deleted with force");
        catalog
            .create_trigger("b", trigger("again", "request:alert"))
            .expect("the path is free again");

        let loaded = Catalog::from_bytes(&catalog.to_bytes()).expect("loads");
        assert_eq!(loaded.triggers("b"), catalog.triggers("b"));
        assert_eq!(loaded.triggers("b").map(|t| t.len()), Some(2));
    }
}
