//! The host services of a trigger on the real database: queries and writes go to the
//! [`Database`], logs to the server log and [`EngineRecords`], the cache to the trigger's namespace (and its
//! database's shared one). Batched writes are kept until the invocation ends, and written
//! only if it succeeded; large ones are parsed on another thread while the plugin runs
//! on, so that a call's write-back is mostly the wait for durability.

use crate::cache::{CacheStore, Namespace};
use crate::egress::{Egress, Permit};
use crate::fair::HeldTurn;
use crate::records::{EngineRecords, LogRecord};
use crate::write_quota::WriteAllowance;
use sluice_catalog::{DatabaseRef, DbId, Quotas, Trigger, Use};
use sluice_lp::{ParsedBody, Precision};
use sluice_plugin_api::{
    BoxFuture, CallUsage, HostServices, Limits, LogLevel, OutboundFailure, OutboundFailureKind,
    OutboundRequest, OutboundResponse, QueryResult, size_text,
};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// What the engine needs of the database; the server implements it with its storage and
/// its SQL engine.
pub trait Database: Send + Sync {
    /// Runs SQL with `$name` parameters on `database`; a result over `max_result_bytes`
    /// (as a plugin receives it) stops the query with an error naming the bound.
    fn query<'a>(
        &'a self,
        database: &'a str,
        sql: &'a str,
        params: &'a [(String, String)],
        max_result_bytes: u64,
    ) -> BoxFuture<'a, Result<QueryResult, String>>;

    /// Writes line protocol (nanosecond timestamps) to `database`; unless `no_sync`, once
    /// durable. Creates the database if missing only when `create_database`.
    fn write<'a>(
        &'a self,
        database: &'a str,
        line_protocol: String,
        no_sync: bool,
        create_database: bool,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// Writes line protocol the engine has parsed (nanosecond timestamps) to `database`,
    /// once durable: `parsed` is `line_protocol` parsed. Creates the database if missing
    /// only when `create_database`.
    fn write_parsed<'a>(
        &'a self,
        database: &'a str,
        line_protocol: String,
        parsed: ParsedBody,
        create_database: bool,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// The id of the database named `name` now, if there is one.
    fn database_id(&self, name: &str) -> Option<DbId>;
}

/// The services of one invocation of one trigger.
pub struct TriggerHost {
    database: DatabaseRef,
    trigger: String,
    /// The trigger as it was when the call started: what it may reach.
    definition: Trigger,
    /// The invocation's bounds on what the host keeps or hands over for it.
    limits: Limits,
    /// What its database's caches may hold together.
    database_cache_bytes: u64,
    /// The lines it may still write, by its database's quota.
    writes: WriteAllowance,
    storage: Arc<dyn Database>,
    cache: Arc<CacheStore>,
    /// The trigger's own cache: of its run when the call started.
    own_cache: Namespace,
    /// Its database's shared cache: of the database's run when the call started.
    shared_cache: Namespace,
    records: Arc<EngineRecords>,
    queued: Mutex<Queued>,
    /// The call's turn on the CPU, when the CPU is shared out.
    cpu: Option<HeldTurn>,
    /// What sends its outbound requests; none: every one refused.
    egress: Option<Arc<Egress>>,
}

/// Batched writes and whether the invocation succeeded.
#[derive(Default)]
struct Queued {
    /// `(database, line protocol being parsed)` in the order the plugin wrote them.
    writes: Vec<(String, Parsing)>,
    /// Set by [`HostServices::finish`].
    succeeded: Option<bool>,
    /// What the call used, set by [`HostServices::finish`].
    usage: CallUsage,
    /// Rows its queries returned.
    query_rows: u64,
    /// Outbound HTTP requests it sent, and the response bytes they brought.
    http: HttpUsage,
}

/// What an invocation's outbound HTTP requests took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpUsage {
    /// Requests sent, whether they succeeded or not.
    pub requests: u64,
    /// Bytes of the response bodies received.
    pub response_bytes: u64,
}

/// Writes at least this large are parsed on a blocking thread; a smaller one costs less
/// to parse at once than to hand to a thread.
const PARSE_AHEAD_BYTES: usize = 64 << 10;

/// A batched write's line protocol and its parse.
enum Parsing {
    /// Being parsed on a blocking thread, while the plugin runs on.
    Running(tokio::task::JoinHandle<(String, ParsedBody)>),
    /// Parsed.
    Done(String, ParsedBody),
}

impl Parsing {
    /// Starts parsing `line_protocol`; lines without a timestamp get the current time.
    fn start(line_protocol: String) -> Self {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let ahead = line_protocol.len() >= PARSE_AHEAD_BYTES;
        let parse = move || {
            let parsed = sluice_lp::parse(&line_protocol, Precision::Nanosecond, now);
            (line_protocol, parsed)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if ahead => Self::Running(runtime.spawn_blocking(parse)),
            _ => {
                let (text, parsed) = parse();
                Self::Done(text, parsed)
            }
        }
    }

    async fn finish(self) -> Result<(String, ParsedBody), String> {
        match self {
            Self::Running(task) => task
                .await
                .map_err(|e| format!("parsing the write failed: {e}")),
            Self::Done(text, parsed) => Ok((text, parsed)),
        }
    }
}

/// A database's batched writes joined by newlines, and their parse when the parts' parses
/// make it: not when a part's last line goes on into the next.
async fn joined(parts: Vec<Parsing>) -> Result<(String, Option<ParsedBody>), String> {
    let mut text = String::new();
    let mut whole = ParsedBody::default();
    let mut exact = true;
    for (index, part) in parts.into_iter().enumerate() {
        let (part_text, parsed) = part.finish().await?;
        if index > 0 {
            exact &= !whole.ends_open;
            text.push('\n');
        }
        text.push_str(&part_text);
        whole.append(parsed);
    }
    Ok((text, exact.then_some(whole)))
}

impl TriggerHost {
    /// The host of `trigger` of `database`, for an invocation within `limits` and the
    /// database's `quotas`.
    pub fn new(
        database: &DatabaseRef,
        trigger: &Trigger,
        (limits, quotas): (&Limits, &Quotas),
        storage: Arc<dyn Database>,
        cache: Arc<CacheStore>,
        records: Arc<EngineRecords>,
    ) -> Self {
        Self {
            database: database.clone(),
            trigger: trigger.trigger_name.clone(),
            definition: trigger.clone(),
            limits: limits.clone(),
            database_cache_bytes: quotas.cache_bytes,
            writes: WriteAllowance::new(&database.name, quotas.writes_per_invocation),
            storage,
            own_cache: cache.trigger_namespace(database.id, trigger.id),
            shared_cache: cache.database_namespace(database.id),
            cache,
            records,
            queued: Mutex::default(),
            cpu: None,
            egress: None,
        }
    }

    /// The same host, sending the plugin's outbound requests with `egress`.
    pub fn with_egress(mut self, egress: Arc<Egress>) -> Self {
        self.egress = Some(egress);
        self
    }

    /// If the plugin may send requests to `scheme://host:port`: the egress to send them
    /// with, and what it permits.
    fn egress_for(
        &self,
        scheme: &str,
        host: &str,
        port: u16,
    ) -> Result<(&Arc<Egress>, Permit), String> {
        let egress = self
            .egress
            .as_ref()
            .ok_or_else(|| sluice_plugin_api::NO_EGRESS.to_string())?;
        let grants = (
            self.trigger.as_str(),
            self.definition.allowed_hosts.as_slice(),
        );
        let permit = egress.permit(grants, scheme, host, port)?;
        Ok((egress, permit))
    }

    /// The same host, for a call holding `cpu` while its plugin's code runs.
    pub fn with_cpu_turn(mut self, cpu: Option<HeldTurn>) -> Self {
        self.cpu = cpu;
        self
    }

    /// `database` (None: the trigger's own) if the trigger may `use` it. Its own only
    /// while it is the database the call started for: one deleted meanwhile and created
    /// again under its name is another tenant's.
    fn permitted<'a>(&'a self, database: Option<&'a str>, using: Use) -> Result<&'a str, String> {
        let own = self.database.name.as_str();
        let name = database.unwrap_or(own);
        if name == own && self.storage.database_id(own) != Some(self.database.id) {
            return Err(format!(
                "database '{own}' of trigger '{}' was deleted while the plugin ran",
                self.trigger
            ));
        }
        if self.definition.reaches(own, name, using) {
            return Ok(name);
        }
        let verb = match using {
            Use::Query => "query",
            Use::Write => "write to",
        };
        Err(format!(
            "trigger '{}' of database '{own}' may not {verb} database '{name}': a trigger \
             reaches only what its creator could, narrowed by --grant-database",
            self.trigger
        ))
    }

    /// What the call used until it ended (nothing before it has).
    pub fn usage(&self) -> CallUsage {
        self.queued().usage
    }

    /// Rows the call's queries returned to it.
    pub fn query_rows(&self) -> u64 {
        self.queued().query_rows
    }

    /// What the call's outbound requests took.
    pub fn http_usage(&self) -> HttpUsage {
        self.queued().http
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn namespace(&self, global: bool) -> Namespace {
        if global {
            self.shared_cache.clone()
        } else {
            self.own_cache.clone()
        }
    }

    /// Whether a write to `database` may create it: not the trigger's own, which is
    /// missing only when it was deleted, with the trigger, while the plugin ran.
    fn may_create(&self, database: &str) -> bool {
        database != self.database.name
    }

    /// Writes what the invocation batched, if it succeeded, one write per database;
    /// returns the errors.
    pub async fn apply_writes(&self) -> Vec<String> {
        let (writes, succeeded) = {
            let mut queued = self.queued();
            (std::mem::take(&mut queued.writes), queued.succeeded)
        };
        if succeeded != Some(true) {
            return Vec::new();
        }
        // One write per database: each write waits for a WAL flush.
        let mut by_database: Vec<(String, Vec<Parsing>)> = Vec::new();
        for (database, parsing) in writes {
            match by_database.iter_mut().find(|(name, _)| *name == database) {
                Some((_, parts)) => parts.push(parsing),
                None => by_database.push((database, vec![parsing])),
            }
        }
        let mut errors = Vec::new();
        for (database, parts) in by_database {
            let create = self.may_create(&database);
            // Checked again: the database may have gone since the plugin wrote.
            if let Err(gone) = self.permitted(Some(&database), Use::Write) {
                errors.push(gone);
                continue;
            }
            let written = match joined(parts).await {
                Ok((text, Some(parsed))) => {
                    self.storage
                        .write_parsed(&database, text, parsed, create)
                        .await
                }
                // Parsed whole, as the parts' parses do not make the whole's.
                Ok((text, None)) => self.storage.write(&database, text, false, create).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                tracing::error!(trigger = %self.trigger, database = %database, "a plugin's batched write failed: {e}");
                errors.push(e);
            }
        }
        errors
    }
}

/// `text` with its control characters (new lines, terminal escapes) written as escapes.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect::<String>()
        .into()
}

/// Puts `value` in `namespace` of `cache` within `limits`: the bound on one value, and the
/// bound of the namespace (the trigger's own, or the store's for a shared cache).
pub(crate) fn put_within(
    cache: &CacheStore,
    namespace: &Namespace,
    (key, value, ttl): (&str, Vec<u8>, Option<Duration>),
    limits: &Limits,
    database_bound: u64,
) -> Result<(), String> {
    if value.len() as u64 > limits.cache_value_bytes {
        return Err(format!(
            "cache value limit of {} exceeded: the value is {}",
            size_text(limits.cache_value_bytes),
            size_text(value.len() as u64)
        ));
    }
    let bound = if namespace.is_shared() {
        cache.shared_bound()
    } else {
        limits.cache_bytes
    };
    cache
        .put(namespace, key, value, ttl, bound, database_bound)
        .map_err(|e| e.to_string())
}

impl HostServices for TriggerHost {
    fn log(&self, level: LogLevel, message: &str) {
        self.records.log(LogRecord {
            time_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            database: self.database.clone(),
            trigger: self.trigger.clone(),
            level: level.as_str(),
            text: message.to_string(),
        });
        // In the server's log, a plugin's line is one line, which cannot pass for another.
        let message = printable(message);
        match level {
            LogLevel::Info => {
                tracing::info!(database = %self.database.name, trigger = %self.trigger, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(database = %self.database.name, trigger = %self.trigger, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(database = %self.database.name, trigger = %self.trigger, "{message}")
            }
        }
    }

    fn query<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [(String, String)],
        database: Option<&'a str>,
    ) -> BoxFuture<'a, Result<QueryResult, String>> {
        Box::pin(async move {
            let database = self.permitted(database, Use::Query)?;
            let result = self
                .storage
                .query(database, sql, params, self.limits.query_result_bound())
                .await
                .map_err(|e| format!("error: {e} executing query on {database}: {sql}"))?;
            self.queued().query_rows += u64::from(result.row_count);
            Ok(result)
        })
    }

    fn write(&self, database: Option<&str>, line_protocol: String) -> Result<(), String> {
        let database = self.permitted(database, Use::Write)?.to_string();
        self.writes.take(&line_protocol)?;
        let parsing = Parsing::start(line_protocol);
        self.queued().writes.push((database, parsing));
        Ok(())
    }

    fn write_sync<'a>(
        &'a self,
        database: Option<&'a str>,
        line_protocol: String,
        no_sync: bool,
    ) -> BoxFuture<'a, Result<(), String>> {
        let allowed = self
            .permitted(database, Use::Write)
            .and_then(|database| self.writes.take(&line_protocol).map(|()| database));
        match allowed {
            Ok(database) => {
                let create = self.may_create(database);
                self.storage.write(database, line_protocol, no_sync, create)
            }
            Err(refused) => Box::pin(async move { Err(refused) }),
        }
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
        put_within(
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

    fn http_allowed(&self, scheme: &str, host: &str, port: u16) -> Result<(), String> {
        self.egress_for(scheme, host, port).map(|_| ())
    }

    fn http_send(
        &self,
        request: OutboundRequest,
    ) -> BoxFuture<'_, Result<OutboundResponse, OutboundFailure>> {
        Box::pin(async move {
            // Counted as the executor counts them against the call's limit: refused too.
            self.queued().http.requests += 1;
            let (egress, permit) = self
                .egress_for(&request.scheme, &request.host, request.port)
                .map_err(|refused| OutboundFailure::new(OutboundFailureKind::Refused, refused))?;
            let egress = Arc::clone(egress);
            // The call's CPU turn goes to others while it waits on the network, and is
            // taken again (in its turn) before its code runs on.
            if let Some(cpu) = &self.cpu {
                cpu.release();
            }
            let (sent, received) = egress.send(request, &permit, self.database.id).await;
            if let Some(cpu) = &self.cpu {
                cpu.pause().await;
            }
            self.queued().http.response_bytes += received;
            sent
        })
    }

    fn finish(&self, succeeded: bool, usage: CallUsage) {
        let mut queued = self.queued();
        queued.succeeded = Some(succeeded);
        queued.usage = usage;
    }

    fn pause(&self) -> Option<BoxFuture<'static, ()>> {
        self.cpu.as_ref().map(HeldTurn::pause)
    }
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn a_plugins_line_stays_one_line_in_the_server_log() {
        assert_eq!(printable("plain text"), "plain text");
        assert_eq!(
            printable("one\nINFO forged\r\x1b[2J"),
            "one\\nINFO forged\\r\\u{1b}[2J"
        );
    }
}
