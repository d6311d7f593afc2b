//! `sluice test wal_plugin | schedule_plugin | request_plugin`: run a plugin once.

use super::limits::LimitArgs;
use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use sluice_engine::batches::table_batches;
use sluice_engine::cache::CacheStore;
use sluice_engine::dry_run::{DEFAULT_CACHE_NAME, DryRunHost, DryRunReport, dry_run};
use sluice_plugin_api::{HttpRequest, PluginCall, PluginRef, TriggerArguments};
use sluice_sandbox::{Sandbox, SandboxConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
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
    /// The plugin: a `.py` file, or a directory holding `__init__.py`
    #[arg(value_name = "FILENAME")]
    pub filename: PathBuf,
    /// Run in this process, without a server: the plugin runs in the same sandbox a
    /// server would use, and nothing is written anywhere
    #[arg(long)]
    pub local: bool,
    /// The trigger's database: batched writes land under it and queries default to it
    #[arg(
        short = 'd',
        long,
        env = "INFLUXDB3_DATABASE_NAME",
        default_value = "test_db"
    )]
    pub database: String,
    /// The plugin directory the plugin sees (read-only) [default: the plugin's directory]
    #[arg(long, env = "INFLUXDB3_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// Trigger arguments, `key=value` pairs separated by commas
    #[arg(long, value_name = "KEY=VALUE,...", value_delimiter = ',', value_parser = key_value)]
    pub input_arguments: Option<Vec<(String, String)>>,
    /// Runs with the same cache name share the cache
    #[arg(long, default_value = DEFAULT_CACHE_NAME)]
    pub cache_name: String,
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
    /// Runs the test and prints its report as JSON.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let common = match &self {
            Self::Wal(a) => &a.common,
            Self::Schedule(a) => &a.common,
            Self::Request(a) => &a.common,
        };
        if !common.local {
            bail!(
                "running a test against a server is not available in this build; \
                 pass --local to run the plugin in this process"
            );
        }
        let plugin = plugin_ref(&common.filename, common.plugin_dir.as_deref())?;
        let args: TriggerArguments = common.input_arguments.clone();
        let (call, trigger_time) = match &self {
            Self::Wal(a) => (wal_call(a, args)?, None),
            Self::Schedule(a) => {
                let at = match a.call_time {
                    Some(at) => at,
                    None => next_cron_time(&a.schedule)?,
                };
                let call_time_ns = at
                    .timestamp_nanos_opt()
                    .context("the call time is out of range")?;
                (PluginCall::Schedule { call_time_ns, args }, Some(at))
            }
            Self::Request(a) => (request_call(a, args), None),
        };
        let limits = common.limits.limits();
        let host = Arc::new(DryRunHost::new(
            &common.database,
            Arc::new(CacheStore::new()),
            &common.cache_name,
        ));

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let mut report: DryRunReport = runtime.block_on(async {
            let sandbox = Sandbox::new(SandboxConfig::default())?;
            anyhow::Ok(dry_run(&sandbox, &plugin, call, &limits, host).await)
        })?;
        report.trigger_time = trigger_time.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        println!("{}", serde_json::to_string_pretty(&report)?);
        Ok(ExitCode::SUCCESS)
    }
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
    Ok(PluginRef { plugin_dir, name })
}

fn wal_call(args: &WalArgs, trigger_args: TriggerArguments) -> anyhow::Result<PluginCall> {
    let lp = match (&args.lp, &args.file) {
        (Some(lp), _) => lp.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read line protocol from {}", file.display()))?,
        (None, None) => bail!("either --lp or --file must be provided"),
    };
    let now = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let parsed = sluice_lp::parse(&lp, sluice_lp::Precision::Nanosecond, now);
    if let Some(error) = parsed.errors.first() {
        bail!("invalid line protocol input: {error}");
    }
    let batches = table_batches(&parsed.lines);
    if let Some(error) = batches.errors.first() {
        bail!("invalid line protocol input: {error}");
    }
    Ok(PluginCall::Writes {
        batches: batches.batches.into(),
        args: trigger_args,
    })
}

fn next_cron_time(expression: &str) -> anyhow::Result<DateTime<Utc>> {
    let schedule = cron::Schedule::from_str(expression).with_context(|| {
        format!("invalid cron expression `{expression}` (6 or 7 fields, seconds first)")
    })?;
    schedule
        .upcoming(Utc)
        .next()
        .with_context(|| format!("cron expression `{expression}` never fires again"))
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
