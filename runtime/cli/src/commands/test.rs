//! `sluice test wal_plugin | schedule_plugin | request_plugin`: run a plugin once.

use super::client::{Client, ServerArgs, block_on};
use super::limits::LimitArgs;
use super::serve::RuntimeKind;
use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use serde_json::json;
use sluice_engine::cache::CacheStore;
use sluice_engine::dry_run::{
    DEFAULT_CACHE_NAME, DryRunHost, DryRunReport, dry_run, wal_test_call,
};
use sluice_engine::host::Database;
use sluice_engine::schedule::next_cron_instant;
use sluice_plugin_api::{HttpRequest, PluginCall, PluginExecutor, PluginRef, TriggerArguments};
use sluice_query::{PluginDatabase, QueryEngine};
use sluice_sandbox::{Sandbox, SandboxConfig};
use sluice_storage::{StorageConfig, WriteBuffer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Which entry point to run.
#[derive(Debug, clap::Subcommand)]
pub enum TestCommand {
    /// Run `process_writes` with line protocol as the flushed rows.
    #[command(name = "wal_plugin")]
    Wal(WalArgs),
    /// Run `process_scheduled_call` at a schedule's next instant (or a given one).
    #[command(name = "schedule_plugin")]
    Schedule(ScheduleArgs),
    /// Run `process_request` with a request built from flags.
    #[command(name = "request_plugin")]
    Request(RequestArgs),
}

/// Flags every test command shares.
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// The plugin: a `.py` file or a directory holding `__init__.py`, in the server's
    /// plugin directory (with --local: a local path)
    #[arg(value_name = "FILENAME")]
    pub filename: PathBuf,
    /// Run in this process, without a server: the plugin runs in the same sandbox a
    /// server would use, on a temporary database, and nothing is written anywhere (the
    /// limit flags apply only then; a server applies its own)
    #[arg(long)]
    pub local: bool,
    #[command(flatten)]
    pub server: ServerArgs,
    /// The trigger's database: batched writes land under it and queries default to it
    #[arg(
        short = 'd',
        long,
        env = "INFLUXDB3_DATABASE_NAME",
        default_value = "test_db"
    )]
    pub database: String,
    /// With --local: the plugin directory the plugin sees (read-only) [default: the
    /// plugin's directory]
    #[arg(long, env = "INFLUXDB3_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// Trigger arguments, `key=value` pairs separated by commas
    #[arg(long, value_name = "KEY=VALUE,...", value_delimiter = ',', value_parser = key_value)]
    pub input_arguments: Option<Vec<(String, String)>>,
    /// Runs with the same cache name share the cache
    #[arg(long, default_value = DEFAULT_CACHE_NAME)]
    pub cache_name: String,
    /// What runs the plugin: `wasm`, the sandbox; or `pyo3`, the machine's CPython with
    /// no sandbox (on a server: admin token only, and started with `--plugin-runtimes
    /// wasm,pyo3`)
    #[arg(long, value_enum, default_value = "wasm")]
    pub runtime: RuntimeKind,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `test wal_plugin`
#[derive(Debug, clap::Args)]
pub struct WalArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Line protocol to deliver as the flushed rows (nanosecond timestamps)
    #[arg(long, conflicts_with = "file")]
    lp: Option<String>,
    /// A file of line protocol to deliver, read by this command
    #[arg(long)]
    file: Option<PathBuf>,
}

/// `test schedule_plugin`
#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// A cron expression with 6 or 7 fields (seconds first), in UTC; the call time is
    /// its next instant
    #[arg(long, default_value = "* * * * * *")]
    schedule: String,
    /// Call at this instant instead (RFC 3339, for example 2025-06-17T13:02:34Z)
    #[arg(long, value_parser = rfc3339)]
    call_time: Option<DateTime<Utc>>,
}

/// `test request_plugin`
#[derive(Debug, clap::Args)]
pub struct RequestArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// HTTP method
    #[arg(long, default_value = "POST")]
    method: String,
    /// The trigger's path, below /api/v3/engine/
    #[arg(long, default_value = "")]
    path: String,
    /// The query string, for example `a=1&b=two`
    #[arg(long, default_value = "")]
    query: String,
    /// A header, `Name: value`; repeat for more
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = header)]
    headers: Vec<(String, String)>,
    /// The request body
    #[arg(long, default_value = "")]
    body: String,
}

pub(super) fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None => Err("must be formatted as \"key=value\"".into()),
    }
}

fn header(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_ascii_lowercase(), value.trim().to_string()))
        }
        _ => Err("must be formatted as \"Name: value\"".into()),
    }
}

fn rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("invalid RFC 3339 time `{text}`: {e}"))
}

impl TestCommand {
    fn common(&self) -> &CommonArgs {
        match self {
            Self::Wal(a) => &a.common,
            Self::Schedule(a) => &a.common,
            Self::Request(a) => &a.common,
        }
    }

    /// Runs the test, on the server or with `--local` in this process, and prints its
    /// report as JSON.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let report = if self.common().local {
            serde_json::to_value(self.run_local()?)?
        } else {
            self.run_on_server()?
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        Ok(ExitCode::SUCCESS)
    }

    /// Asks the server to run the plugin from its plugin directory.
    fn run_on_server(&self) -> anyhow::Result<serde_json::Value> {
        let common = self.common();
        let filename = common
            .filename
            .to_str()
            .context("the plugin name is not valid UTF-8")?;
        let arguments: Option<BTreeMap<&str, &str>> =
            common.input_arguments.as_ref().map(|pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect()
            });
        let (path, body) = match self {
            Self::Wal(a) => (
                "/api/v3/plugin_test/wal",
                json!({
                    "filename": filename,
                    "database": common.database,
                    "input_lp": wal_input(a)?,
                    "cache_name": common.cache_name,
                    "input_arguments": arguments,
                    "runtime": common.runtime.name(),
                }),
            ),
            Self::Schedule(a) => {
                if a.call_time.is_some() {
                    bail!(
                        "--call-time needs --local: a server calls at the schedule's next instant"
                    );
                }
                (
                    "/api/v3/plugin_test/schedule",
                    json!({
                        "filename": filename,
                        "database": common.database,
                        "schedule": a.schedule,
                        "cache_name": common.cache_name,
                        "input_arguments": arguments,
                        "runtime": common.runtime.name(),
                    }),
                )
            }
            Self::Request(_) => bail!(
                "test request_plugin runs only with --local; on a server, create a request \
                 trigger and call /api/v3/engine/<path>"
            ),
        };
        let client = Client::new(&common.server)?;
        block_on(async {
            let response = client
                .send(client.request(Method::POST, path).json(&body))
                .await?;
            response
                .json()
                .await
                .context("the server's answer is not a test report")
        })
    }

    /// Runs the plugin in this process's sandbox, on a temporary database that holds the
    /// WAL test's rows (as a server's database holds a flush's rows when its triggers
    /// run). The plugin's own writes are reported, not performed.
    fn run_local(&self) -> anyhow::Result<DryRunReport> {
        let common = self.common();
        let plugin = plugin_ref(&common.filename, common.plugin_dir.as_deref())?;
        let args: TriggerArguments = common.input_arguments.clone();
        let mut input_lp = None;
        let (call, trigger_time) = match self {
            Self::Wal(a) => {
                let lp = wal_input(a)?;
                let call = wal_test_call(&lp, args).map_err(anyhow::Error::msg)?;
                input_lp = Some(lp);
                (call, None)
            }
            Self::Schedule(a) => {
                let at = match a.call_time {
                    Some(at) => at,
                    None => next_cron_instant(&a.schedule).map_err(anyhow::Error::msg)?,
                };
                let call_time_ns = at
                    .timestamp_nanos_opt()
                    .context("the call time is out of range")?;
                (PluginCall::Schedule { call_time_ns, args }, Some(at))
            }
            Self::Request(a) => (request_call(a, args), None),
        };
        let limits = common.limits.limits();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_stack_size(sluice_query::QUERY_THREAD_STACK_BYTES)
            .build()
            .context("cannot start the async runtime")?;
        let mut report = runtime.block_on(async {
            let scratch = tempfile::tempdir().context("cannot create a temporary database")?;
            let database = scratch_database(scratch.path(), &common.database, input_lp).await?;
            let host = DryRunHost::new(
                &common.database,
                &limits,
                Arc::new(CacheStore::default()),
                &common.cache_name,
            )
            .with_queries(database);
            let executor: Arc<dyn PluginExecutor> = match common.runtime {
                RuntimeKind::Wasm => Arc::new(Sandbox::new(SandboxConfig::default())?),
                RuntimeKind::Pyo3 => super::serve::pyo3_runtime(None)?,
            };
            let host = Arc::new(host);
            anyhow::Ok(dry_run(executor.as_ref(), &plugin, call, &limits, host).await)
        })?;
        report.trigger_time = trigger_time.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        Ok(report)
    }
}

/// A database in `dir` named `name`, holding `input_lp` when given.
async fn scratch_database(
    dir: &Path,
    name: &str,
    input_lp: Option<String>,
) -> anyhow::Result<Arc<dyn Database>> {
    let config = StorageConfig::local(dir.to_path_buf()).map_err(anyhow::Error::msg)?;
    let (storage, _) = WriteBuffer::open(config)
        .await
        .context("cannot open a temporary database")?;
    storage.spawn_flusher(std::time::Duration::from_millis(1), 10_000);
    storage
        .catalog()
        .create_database(name)
        .with_context(|| format!("invalid database name `{name}`"))?;
    let database = PluginDatabase {
        query: QueryEngine::new(Arc::clone(&storage)),
        storage,
    };
    if let Some(lp) = input_lp {
        database
            .write(name, lp, false, false)
            .await
            .map_err(anyhow::Error::msg)
            .context("cannot load the test rows")?;
    }
    Ok(Arc::new(database))
}

/// Splits FILENAME into the plugin directory and the plugin's name inside it.
fn plugin_ref(filename: &Path, plugin_dir: Option<&Path>) -> anyhow::Result<PluginRef> {
    let (plugin_dir, name) = match plugin_dir {
        Some(dir) => (dir.to_path_buf(), filename.to_path_buf()),
        None => {
            let absolute = std::path::absolute(filename)
                .with_context(|| format!("invalid plugin path {}", filename.display()))?;
            let parent = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
            let name = absolute.file_name().map(PathBuf::from).unwrap_or_default();
            (parent, name)
        }
    };
    let name = name
        .to_str()
        .with_context(|| format!("plugin name {} is not valid UTF-8", name.display()))?
        .to_string();
    Ok(PluginRef::new(plugin_dir, name))
}

fn wal_input(args: &WalArgs) -> anyhow::Result<String> {
    match (&args.lp, &args.file) {
        (Some(lp), _) => Ok(lp.clone()),
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read line protocol from {}", file.display())),
        (None, None) => bail!("either --lp or --file must be provided"),
    }
}

fn request_call(args: &RequestArgs, trigger_args: TriggerArguments) -> PluginCall {
    let query = parse_query(&args.query);
    PluginCall::Request {
        request: HttpRequest {
            method: args.method.to_ascii_uppercase(),
            path: args.path.clone(),
            query,
            headers: args
                .headers
                .iter()
                .filter(|(name, _)| name != "authorization")
                .cloned()
                .collect(),
            body: args.body.clone().into_bytes(),
        },
        args: trigger_args,
    }
}

/// `a=1&b=x+y%21` → [("a","1"), ("b","x y!")].
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_percent_decoded() {
        assert_eq!(
            parse_query("a=1&b=x+y%21&c&d=%zz&%C3%A9=%"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y!".into()),
                ("c".into(), "".into()),
                ("d".into(), "%zz".into()),
                ("é".into(), "%".into()),
            ]
        );
    }

    #[test]
    fn arguments_and_headers_need_their_separator() {
        assert_eq!(key_value("k=v=w"), Ok(("k".into(), "v=w".into())));
        assert!(key_value("novalue").is_err());
        assert_eq!(header("X-Thing: 1"), Ok(("x-thing".into(), "1".into())));
        assert!(header("bad").is_err());
    }
}
