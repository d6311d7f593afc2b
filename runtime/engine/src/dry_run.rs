//! Running a plugin once without touching the database: the `test` commands.
//!
//! Logs are collected as `INFO: …`, `WARN: …`, `ERROR: …` lines; writes are collected per
//! database (immediate writes first, then batched ones) and validated, not performed;
//! caches live in test namespaces named by `cache_name`, so runs with the same name share
//! state. The report serialises to the JSON of upstream's plugin test endpoints.

use crate::cache::{CacheStore, Namespace};
use crate::fair::HeldTurn;
use crate::host::Database;
use crate::write_quota::WriteAllowance;
use serde::Serialize;
use sluice_catalog::{DbId, Quotas};
use sluice_plugin_api::{
    BoxFuture, CallUsage, HostServices, HttpResponse, InvocationError, Limits, LogLevel,
    PluginCall, PluginExecutor, PluginRef, QueryResult, TriggerArguments,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The cache name test runs use when none is given.
pub const DEFAULT_CACHE_NAME: &str = "_shared_test";

/// What a dry run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DryRunReport {
    /// The planned call time of a schedule run, RFC 3339 in UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_time: Option<String>,
    /// Log lines with their level prefix.
    pub log_lines: Vec<String>,
    /// Lines the plugin would have written, per database.
    pub database_writes: BTreeMap<String, Vec<String>>,
    /// Why the run failed, and any invalid writes.
    pub errors: Vec<String>,
    /// The response of a request run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseReport>,
}

/// A request plugin's response, body as text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseReport {
    /// Status code.
    pub status: u16,
    /// Headers in the plugin's order, serialised as a JSON object.
    #[serde(serialize_with = "pairs_as_object")]
    pub headers: Vec<(String, String)>,
    /// Body, as UTF-8 (invalid bytes replaced).
    pub body: String,
}

fn pairs_as_object<S: serde::Serializer>(
    pairs: &[(String, String)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(pairs.len()))?;
    for (key, value) in pairs {
        map.serialize_entry(key, value)?;
    }
    map.end()
}

/// The host services of a dry run.
pub struct DryRunHost {
    database: String,
    /// The run's bounds on what the host keeps or hands over for it.
    limits: Limits,
    cache: Arc<CacheStore>,
    cache_name: String,
    /// Where queries go; without one they fail with a clear message.
    queries: Option<Arc<dyn Database>>,
    /// Whether the plugin may name other databases than its own (an admin's run).
    reaches_others: bool,
    /// The database's id, whose quota the run's caches count against (0: none).
    database_id: DbId,
    /// What the database's caches may hold together.
    database_cache_bytes: u64,
    /// The lines the run may still write, by its database's quota.
    writes: WriteAllowance,
    state: Mutex<Collected>,
    /// The run's turn on the CPU, when the CPU is shared out.
    cpu: Option<HeldTurn>,
}

#[derive(Default)]
struct Collected {
    log_lines: Vec<String>,
    immediate: BTreeMap<String, Vec<String>>,
    batched: BTreeMap<String, Vec<String>>,
}

impl DryRunHost {
    /// A dry-run host for a trigger on `database` running within `limits`, caching
    /// under `cache_name`.
    pub fn new(
        database: impl Into<String>,
        limits: &Limits,
        cache: Arc<CacheStore>,
        cache_name: impl Into<String>,
    ) -> Self {
        Self {
            database: database.into(),
            limits: limits.clone(),
            cache,
            cache_name: cache_name.into(),
            queries: None,
            reaches_others: true,
            database_id: DbId::default(),
            database_cache_bytes: u64::MAX,
            writes: WriteAllowance::unbounded(),
            state: Mutex::default(),
            cpu: None,
        }
    }

    /// The same host, for a run holding `cpu` while its plugin's code runs.
    pub fn with_cpu_turn(mut self, cpu: Option<HeldTurn>) -> Self {
        self.cpu = cpu;
        self
    }

    /// The same host, refusing the plugin's queries and writes that name another
    /// database than its own (a tenant's run), with caches apart from the admin's runs.
    pub fn own_database_only(mut self) -> Self {
        self.reaches_others = false;
        self
    }

    /// The same host, held to the `quotas` of the database `id`: its caches counted
    /// against the database's, its writes within the quota of one invocation's.
    pub fn counted(mut self, id: DbId, quotas: &Quotas) -> Self {
        self.database_id = id;
        self.database_cache_bytes = quotas.cache_bytes;
        self.writes = WriteAllowance::new(&self.database, quotas.writes_per_invocation);
        self
    }

    /// The same host, running the plugin's queries on `database` (they are real; writes
    /// still are not).
    pub fn with_queries(mut self, database: Arc<dyn Database>) -> Self {
        self.queries = Some(database);
        self
    }

    /// The log lines collected so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.collected().log_lines.clone()
    }

    fn collected(&self) -> std::sync::MutexGuard<'_, Collected> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn namespace(&self, global: bool) -> Namespace {
        let (database, tenant) = (self.database_id, !self.reaches_others);
        let name = self.cache_name.clone();
        if global {
            Namespace::TestShared {
                database,
                tenant,
                name,
            }
        } else {
            Namespace::Test {
                database,
                tenant,
                name,
            }
        }
    }

    fn database_for(&self, database: Option<&str>) -> Result<String, String> {
        match database {
            Some(other) if other != self.database && !self.reaches_others => Err(format!(
                "database '{other}' is not reachable from a test run on database '{}' \
                 made with a database token",
                self.database
            )),
            named => Ok(named.unwrap_or(&self.database).to_string()),
        }
    }
}

impl HostServices for DryRunHost {
    fn log(&self, level: LogLevel, message: &str) {
        self.collected()
            .log_lines
            .push(format!("{}: {message}", level.as_str()));
    }

    fn query<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [(String, String)],
        database: Option<&'a str>,
    ) -> BoxFuture<'a, Result<QueryResult, String>> {
        let database = self.database_for(database);
        Box::pin(async move {
            let database = database?;
            match &self.queries {
                Some(queries) => {
                    let bound = self.limits.query_result_bound();
                    queries.query(&database, sql, params, bound).await
                }
                None => Err(format!(
                    "error: this run has no database to query executing query on {database}: {sql}"
                )),
            }
        })
    }

    fn write(&self, database: Option<&str>, line_protocol: String) -> Result<(), String> {
        let database = self.database_for(database)?;
        self.writes.take(&line_protocol)?;
        // Guests hand batched lines over many at a time; the report lists each.
        self.collected()
            .batched
            .entry(database)
            .or_default()
            .extend(sluice_lp::lines(&line_protocol).map(str::to_string));
        Ok(())
    }

    fn write_sync<'a>(
        &'a self,
        database: Option<&'a str>,
        line_protocol: String,
        _no_sync: bool,
    ) -> BoxFuture<'a, Result<(), String>> {
        let allowed = self
            .database_for(database)
            .and_then(|database| self.writes.take(&line_protocol).map(|()| database));
        let database = match allowed {
            Ok(database) => database,
            Err(refused) => return Box::pin(async move { Err(refused) }),
        };
        self.collected()
            .immediate
            .entry(database)
            .or_default()
            .push(line_protocol);
        Box::pin(async { Ok(()) })
    }

    fn cache_get(&self, key: &str, global: bool) -> Option<Vec<u8>> {
        self.cache.get(&self.namespace(global), key)
    }

    fn cache_put(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        global: bool,
    ) -> Result<(), String> {
        let namespace = self.namespace(global);
        crate::host::put_within(
            &self.cache,
            &namespace,
            (key, value, ttl),
            &self.limits,
            self.database_cache_bytes,
        )
    }

    fn cache_delete(&self, key: &str, global: bool) -> bool {
        self.cache.delete(&self.namespace(global), key)
    }

    fn finish(&self, succeeded: bool, _: CallUsage) {
        if !succeeded {
            self.collected().batched.clear();
        }
    }

    fn pause(&self) -> Option<BoxFuture<'static, ()>> {
        self.cpu.as_ref().map(HeldTurn::pause)
    }
}

/// The call of a WAL test: `input_lp` (nanosecond timestamps, every line valid) as the
/// rows of one flush.
///
/// # Errors
///
/// The first invalid line, or a column whose type changes between lines.
pub fn wal_test_call(input_lp: &str, args: TriggerArguments) -> Result<PluginCall, String> {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let parsed = sluice_lp::parse(input_lp, sluice_lp::Precision::Nanosecond, now);
    if let Some(error) = parsed.errors.first() {
        return Err(format!("invalid line protocol input: {error}"));
    }
    let batches = crate::batches::table_batches(&parsed.lines);
    if let Some(error) = batches.errors.first() {
        return Err(format!("invalid line protocol input: {error}"));
    }
    Ok(PluginCall::Writes {
        batches: batches.batches.into(),
        args,
    })
}

/// Runs `call` once on `plugin` with a [`DryRunHost`] and reports what happened.
pub async fn dry_run(
    executor: &dyn PluginExecutor,
    plugin: &PluginRef,
    call: PluginCall,
    limits: &Limits,
    host: Arc<DryRunHost>,
) -> DryRunReport {
    let outcome = executor
        .run(
            plugin,
            call,
            limits,
            Arc::clone(&host) as Arc<dyn HostServices>,
        )
        .await;
    let mut errors = Vec::new();
    let mut response = None;
    match outcome {
        Ok(invocation) => response = invocation.response.map(response_report),
        Err(error) => errors.push(execution_error(&error)),
    }
    let collected = std::mem::take(&mut *host.collected());
    let mut database_writes = collected.immediate;
    for (database, lines) in collected.batched {
        database_writes.entry(database).or_default().extend(lines);
    }
    for (database, lines) in &database_writes {
        errors.extend(validate_writes(database, lines));
    }
    DryRunReport {
        trigger_time: None,
        log_lines: collected.log_lines,
        database_writes,
        errors,
        response,
    }
}

fn execution_error(error: &InvocationError) -> String {
    format!("error executing plugin: {error}")
}

fn response_report(response: HttpResponse) -> ResponseReport {
    ResponseReport {
        status: response.status,
        headers: response.headers,
        body: String::from_utf8_lossy(&response.body).into_owned(),
    }
}

/// Checks that `lines` would be accepted by a write to `database`.
fn validate_writes(database: &str, lines: &[String]) -> Vec<String> {
    let parsed = sluice_lp::parse(&lines.join("\n"), sluice_lp::Precision::Nanosecond, 0);
    let mut errors: Vec<String> = parsed
        .errors
        .iter()
        .map(|e| format!("line protocol parse error on write to db {database}: {e}"))
        .collect();
    let batches = crate::batches::table_batches(&parsed.lines);
    errors.extend(
        batches
            .errors
            .iter()
            .map(|e| format!("invalid write to db {database}: {e}")),
    );
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_writes_are_reported_per_database() {
        let errors = validate_writes("db", &["ok f=1i".into(), "broken".into()]);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("line protocol parse error on write to db db: line 2"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn failed_runs_drop_batched_writes_but_keep_immediate_ones() {
        let host = DryRunHost::new(
            "db",
            &Limits::default(),
            Arc::new(CacheStore::default()),
            DEFAULT_CACHE_NAME,
        );
        host.write(None, "a f=1i".into()).expect("queued");
        host.write(Some("other"), "b f=1i".into()).expect("queued");
        drop(host.write_sync(None, "c f=1i".into(), false));
        host.finish(false, CallUsage::default());
        let collected = host.collected();
        assert!(collected.batched.is_empty());
        assert_eq!(collected.immediate["db"], vec!["c f=1i".to_string()]);
    }
}
