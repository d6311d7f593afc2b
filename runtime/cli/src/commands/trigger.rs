//! `sluice create|enable|disable|delete|update trigger`: processing-engine triggers on a
//! server.

use super::client::{Client, ServerArgs, block_on};
use super::limits::LimitArgs;
use super::serve::RuntimeKind;
use super::test::key_value;
use super::upload::LocalPlugin;
use reqwest::Method;
use serde_json::json;
use sluice_catalog::TriggerSpec;
use sluice_http::triggers::LimitsRequest;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// The trigger a command acts on.
#[derive(Debug, clap::Args)]
pub struct TriggerTarget {
    #[command(flatten)]
    server: ServerArgs,
    /// The trigger's database
    #[arg(short = 'd', long, env = "INFLUXDB3_DATABASE_NAME")]
    database: String,
    /// The trigger's name
    trigger_name: String,
}

/// What a trigger does when its plugin fails.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ErrorBehavior {
    /// Log the error and go on
    Log,
    /// Run the same input again (a bounded number of times, with backoff)
    Retry,
    /// Disable the trigger
    Disable,
}

/// Where a WAL trigger without a place in the WAL starts reading it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum WalStart {
    /// At the WAL's head: the flushes written from then on
    Head,
    /// At the oldest flush the WAL still holds (those since the last snapshot, and those
    /// kept for other WAL triggers)
    Earliest,
}

/// Flags of `sluice create trigger`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Trigger specifications:\n  \
    table:NAME      each WAL flush's rows of one table (it may not exist yet)\n  \
    all_tables      each WAL flush's rows of every table\n  \
    every:DURATION  every 10s, 5m, 1h 30m, …, at multiples of it since the epoch\n  \
    cron:EXPR       a cron schedule of 6 or 7 fields (seconds first), UTC\n  \
    request:PATH    requests to /api/v3/engine/PATH")]
pub struct CreateTriggerArgs {
    #[command(flatten)]
    target: TriggerTarget,
    /// When the trigger fires (see below)
    #[arg(long, value_parser = |s: &str| TriggerSpec::parse(s).map_err(|e| e.to_string()))]
    trigger_spec: TriggerSpec,
    /// The plugin: a file or package directory under the server's --plugin-dir, or
    /// `gh:PATH` in the server's --plugin-repo; with --upload, a local file or directory
    #[arg(long, visible_alias = "plugin-filename")]
    path: String,
    /// Send the local file or directory given by --path to the server's plugin directory
    /// first (a directory must hold `__init__.py`)
    #[arg(long)]
    upload: bool,
    /// Arguments given to the plugin, `key=value` pairs separated by commas
    #[arg(long, value_name = "KEY=VALUE,...", value_delimiter = ',', value_parser = key_value)]
    trigger_arguments: Option<Vec<(String, String)>>,
    /// Create the trigger disabled
    #[arg(long)]
    disabled: bool,
    /// Let invocations overlap instead of running one at a time
    #[arg(long)]
    run_asynchronous: bool,
    /// With --run-asynchronous, how many invocations may run at once (the database's
    /// quota bounds them too): a request beyond it waits up to 1 s for one to end, then
    /// is answered 429; a WAL or schedule call waits
    #[arg(long, value_name = "N", requires = "run_asynchronous")]
    max_concurrency: Option<u64>,
    /// What to do when the plugin fails
    #[arg(long, value_enum, default_value = "log")]
    error_behavior: ErrorBehavior,
    /// A WAL trigger: where it starts reading the WAL when created, and when enabled
    /// again after being disabled (a trigger disabled by `--error-behavior disable`
    /// resumes at the flush it failed on)
    #[arg(long, value_enum, default_value = "head")]
    wal_start: WalStart,
    /// Let the plugin use only this database besides the trigger's own (repeatable, or
    /// comma-separated). Without it, the plugin may use what the token creating the
    /// trigger may: every database for the admin token, a database token's databases
    /// (query those it may read, write those it may write). With it, only those of
    /// them named here
    #[arg(long, value_name = "DATABASE", value_delimiter = ',')]
    grant_database: Vec<String>,
    /// Let the plugin send HTTP requests to this destination, `[scheme://]host:port`
    /// (repeatable, or comma-separated): `hooks.slack.com:443`, `localhost:8181`. It
    /// must be within the server's `--egress-allow`. Without it the plugin sends none
    #[arg(long, value_name = "HOST:PORT", value_delimiter = ',')]
    allow_host: Vec<String>,
    /// A request trigger anyone may call, without a token (by default only tokens that
    /// may read or invoke the trigger's database)
    #[arg(long)]
    public: bool,
    /// What runs the plugin: `wasm`, the WebAssembly sandbox; or `pyo3`, the machine's
    /// CPython in the server's process, with NO sandbox (admin token only, on a server
    /// started with `--plugin-runtimes wasm,pyo3`; for trusted plugins that need native
    /// packages; no CPU-time, memory or wall-time limit)
    #[arg(long, value_enum, default_value = "wasm")]
    runtime: RuntimeKind,
    #[command(
        flatten,
        next_help_heading = "Limits of each invocation (default: the server's, whose own defaults are shown)"
    )]
    limits: LimitArgs,
}

/// Flags of `sluice delete trigger`.
#[derive(Debug, clap::Args)]
pub struct DeleteTriggerArgs {
    #[command(flatten)]
    target: TriggerTarget,
    /// Delete the trigger even if it is enabled
    #[arg(long)]
    force: bool,
}

impl CreateTriggerArgs {
    /// Creates the trigger.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let target = &self.target;
        let client = Client::new(&target.server)?;
        let arguments: Option<BTreeMap<String, String>> = self
            .trigger_arguments
            .map(|pairs| pairs.into_iter().collect());
        let error_behavior = match self.error_behavior {
            ErrorBehavior::Log => "log",
            ErrorBehavior::Retry => "retry",
            ErrorBehavior::Disable => "disable",
        };
        let plugin_filename = if self.upload {
            upload(&client, &target.database, &PathBuf::from(&self.path))?
        } else {
            self.path
        };
        let body = json!({
            "db": target.database,
            "plugin_filename": plugin_filename,
            "trigger_name": target.trigger_name,
            // The canonical form, as upstream's CLI sends it.
            "trigger_specification": self.trigger_spec.to_string(),
            "trigger_settings": {
                "run_async": self.run_asynchronous,
                "error_behavior": error_behavior,
                "max_concurrency": self.max_concurrency,
                "wal_start": match self.wal_start {
                    WalStart::Head => "head",
                    WalStart::Earliest => "earliest",
                },
            },
            "trigger_arguments": arguments,
            "disabled": self.disabled,
            "granted_databases": self.grant_database,
            "allowed_hosts": self.allow_host,
            "public": self.public,
            "limits": LimitsRequest::new(&self.limits.overrides()),
            "runtime": self.runtime.name(),
        });
        block_on(
            client.send(
                client
                    .request(Method::POST, "/api/v3/configure/processing_engine_trigger")
                    .json(&body),
            ),
        )?;
        println!("Trigger {} created successfully", target.trigger_name);
        Ok(ExitCode::SUCCESS)
    }
}

impl TriggerTarget {
    /// Enables (`enable`) or disables (`disable`) the trigger.
    fn switch(&self, action: &str) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        let path = format!("/api/v3/configure/processing_engine_trigger/{action}");
        let query = [("db", &self.database), ("trigger_name", &self.trigger_name)];
        block_on(client.send(client.request(Method::POST, &path).query(&query)))?;
        println!("Trigger {} {action}d successfully", self.trigger_name);
        Ok(ExitCode::SUCCESS)
    }

    /// Enables the trigger.
    pub fn enable(&self) -> anyhow::Result<ExitCode> {
        self.switch("enable")
    }

    /// Disables the trigger.
    pub fn disable(&self) -> anyhow::Result<ExitCode> {
        self.switch("disable")
    }
}

impl DeleteTriggerArgs {
    /// Deletes the trigger.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let target = &self.target;
        let client = Client::new(&target.server)?;
        let body = json!({"db": target.database, "trigger_name": target.trigger_name, "force": self.force});
        block_on(
            client.send(
                client
                    .request(
                        Method::DELETE,
                        "/api/v3/configure/processing_engine_trigger",
                    )
                    .json(&body),
            ),
        )?;
        println!("Trigger {} deleted successfully", target.trigger_name);
        Ok(ExitCode::SUCCESS)
    }
}

/// Sends the local plugin at `path` into the server's plugin directory; returns the name
/// it has there.
fn upload(client: &Client, database: &str, path: &std::path::Path) -> anyhow::Result<String> {
    let (name, files) = match LocalPlugin::read(path)? {
        LocalPlugin::File { name, content } => (name.clone(), vec![(name, content)]),
        LocalPlugin::Package { name, files } => {
            let files = files
                .into_iter()
                .map(|(relative, content)| (format!("{name}/{relative}"), content))
                .collect();
            (name, files)
        }
    };
    for (plugin_name, content) in files {
        block_on(
            client.send(
                client
                    .request(Method::POST, "/api/v3/plugins/files")
                    .query(&[("db", database)])
                    .json(&json!({"plugin_name": plugin_name, "content": content})),
            ),
        )?;
    }
    Ok(name)
}

/// Flags of `sluice update trigger`.
#[derive(Debug, clap::Args)]
pub struct UpdateTriggerArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The trigger's database
    #[arg(short = 'd', long, env = "INFLUXDB3_DATABASE_NAME")]
    database: String,
    /// The trigger whose plugin is replaced
    #[arg(short = 't', long)]
    trigger_name: String,
    /// The new code: a local file, or a package directory (replaced as a whole)
    #[arg(short = 'p', long)]
    path: PathBuf,
}

impl UpdateTriggerArgs {
    /// Replaces the trigger's plugin code on the server.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        let query = [("db", &self.database)];
        let (path, body, how) = match LocalPlugin::read(&self.path)? {
            LocalPlugin::File { content, .. } => (
                "/api/v3/plugins/files",
                json!({"plugin_name": self.trigger_name, "content": content}),
                "",
            ),
            LocalPlugin::Package { files, .. } => {
                let files: Vec<_> = files
                    .into_iter()
                    .map(|(relative_path, content)| {
                        json!({"relative_path": relative_path, "content": content})
                    })
                    .collect();
                (
                    "/api/v3/plugins/directory",
                    json!({"plugin_name": self.trigger_name, "files": files}),
                    " (atomic directory replacement)",
                )
            }
        };
        block_on(client.send(client.request(Method::PUT, path).query(&query).json(&body)))?;
        println!("Trigger '{}' updated successfully{how}", self.trigger_name);
        Ok(ExitCode::SUCCESS)
    }
}
