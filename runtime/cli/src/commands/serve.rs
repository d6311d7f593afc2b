//! `sluice serve`: the database server.

use super::limits::LimitArgs;
use anyhow::{Context, bail};
use sluice_catalog::{PluginType, Quotas};
use sluice_engine::ProcessingEngine;
use sluice_engine::cache::CacheStore;
use sluice_engine::cursors::Cursors;
use sluice_engine::egress::Egress;
use sluice_engine::fair::FairTurns;
use sluice_engine::invoke::Invoker;
use sluice_engine::manager::WalFeed;
use sluice_engine::plugin_dir::PluginAreas;
use sluice_http::listen::{self, HttpLimits};
use sluice_http::packages::PackageManager;
use sluice_http::plugin_repo::{DEFAULT_PLUGIN_REPO, PluginRepo};
use sluice_http::virtual_env::VirtualEnv;
use sluice_http::{AppState, Authentication, router};
use sluice_query::wal_feed::{FlushFeed, StorageWal};
use sluice_query::{PluginDatabase, QueryEngine, QueryLimits};
use sluice_sandbox::{Sandbox, SandboxConfig};
use sluice_storage::{
    BufferLimits, S3Config, SnapshotPolicy, Snapshots, StorageConfig, StoreConfig, WriteBuffer,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::SignalKind;

/// Spare instances kept ready unless `--spare-instances` says otherwise.
const DEFAULT_SPARE_INSTANCES: u32 = 2;

/// Where Parquet files are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectStoreKind {
    /// Files under `--data-dir`
    File,
    /// Process memory: Parquet files are lost when the server stops (the WAL is not)
    Memory,
    /// An S3-compatible bucket (`--bucket`, `--aws-*`)
    S3,
}

/// A kind of trigger, for `--restrict-plugin-triggers-to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TriggerKind {
    /// `table:` and `all_tables` triggers
    #[value(alias = "wal_flush")]
    Wal,
    /// `every:` and `cron:` triggers
    Schedule,
    /// `request:` triggers
    Request,
}

impl TriggerKind {
    fn plugin_type(self) -> PluginType {
        match self {
            Self::Wal => PluginType::WalRows,
            Self::Schedule => PluginType::Schedule,
            Self::Request => PluginType::Request,
        }
    }
}

/// What runs plugins, for `--plugin-runtimes` and `create trigger --runtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// The WebAssembly sandbox
    Wasm,
    /// The machine's CPython in the server's process, without a sandbox
    Pyo3,
}

impl RuntimeKind {
    /// Its name in requests.
    pub fn name(self) -> &'static str {
        match self {
            Self::Wasm => "wasm",
            Self::Pyo3 => "pyo3",
        }
    }
}

/// Where the S3 object store is.
#[derive(Debug, clap::Args)]
pub struct S3Args {
    /// Bucket of the S3 object store
    #[arg(long, env = "INFLUXDB3_BUCKET")]
    bucket: Option<String>,
    /// Endpoint of an S3-compatible store (MinIO, Ceph, …); AWS when unset
    #[arg(long, env = "AWS_ENDPOINT")]
    aws_endpoint: Option<String>,
    /// Region of the bucket
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    aws_default_region: String,
    /// Access key id (otherwise the usual AWS credential sources)
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    aws_access_key_id: Option<String>,
    /// Secret access key
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    aws_secret_access_key: Option<String>,
    /// Session token of temporary credentials
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    aws_session_token: Option<String>,
    /// Allow an `http://` endpoint
    #[arg(long, env = "AWS_ALLOW_HTTP")]
    aws_allow_http: bool,
}

/// Flags of `sluice serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory holding the catalog, the WAL and, with `--object-store file`, the
    /// Parquet files
    #[arg(long, env = "INFLUXDB3_DB_DIR", default_value = "sluice-data")]
    data_dir: PathBuf,
    /// Where the Parquet snapshots are stored
    #[arg(
        long,
        env = "INFLUXDB3_OBJECT_STORE",
        value_enum,
        default_value = "file"
    )]
    object_store: ObjectStoreKind,
    #[command(flatten)]
    s3: S3Args,
    /// Snapshot the buffer to Parquet once it holds this many rows
    #[arg(long, env = "SLUICE_SNAPSHOT_ROWS", default_value_t = 1_000_000)]
    snapshot_rows: usize,
    /// Snapshot rows that have been in the buffer this long
    #[arg(long, env = "SLUICE_SNAPSHOT_INTERVAL", default_value = "10m", value_parser = positive_duration)]
    snapshot_interval: Duration,
    /// The memory the rows not yet in Parquet may take, in MiB: past half of it a
    /// snapshot starts; a write that would pass it is answered 503 with `Retry-After`
    /// until snapshots have made room (one larger than all of it, 413)
    #[arg(long, env = "SLUICE_BUFFER_MEMORY_MIB", default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..))]
    buffer_memory_mib: u64,
    /// The columns a table may have, `time` included: a line that would add more is
    /// refused
    #[arg(long, env = "SLUICE_MAX_COLUMNS_PER_TABLE", default_value_t = sluice_catalog::DEFAULT_MAX_COLUMNS as u64, value_parser = clap::value_parser!(u64).range(2..))]
    max_columns_per_table: u64,
    /// Address to listen on; port 0 picks a free port
    #[arg(
        long,
        env = "INFLUXDB3_HTTP_BIND_ADDR",
        default_value = "127.0.0.1:8181"
    )]
    http_bind: SocketAddr,
    /// Connections served at once; more wait in the kernel's queue until one closes.
    /// Default: a quarter of the process's limit on open files, at most 16,384, so that
    /// idle clients never take the descriptors the WAL, the stores and the plugins need
    #[arg(long, env = "SLUICE_MAX_HTTP_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    max_http_connections: Option<u64>,
    /// The memory, in MiB, that the bodies of all requests (decoded, when gzip) share
    /// until they are answered: a body that finds it taken gets 503 with `Retry-After`.
    /// At least one body of `--max-http-request-size`
    #[arg(long, env = "SLUICE_MAX_HTTP_BODY_MEMORY_MIB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    max_http_body_memory_mib: u64,
    /// How long a client may take to send a request's headers, and stay idle between
    /// requests, before its connection is closed
    #[arg(long, env = "SLUICE_HTTP_HEADER_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    http_header_timeout: Duration,
    /// The longest pause while a request's body arrives; beyond it the request is
    /// answered 408
    #[arg(long, env = "SLUICE_HTTP_BODY_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    http_body_timeout: Duration,
    /// On SIGTERM or SIGINT, how long requests under way may take to finish before the
    /// server closes their connections; then the WAL is flushed and the server exits
    #[arg(long, env = "SLUICE_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,
    /// How often writes are made durable and queryable; writes without `no_sync` wait
    /// for the next flush, so this is also their added latency
    #[arg(long, env = "INFLUXDB3_WAL_FLUSH_INTERVAL", default_value = "1s", value_parser = positive_duration)]
    wal_flush_interval: Duration,
    /// Flush as soon as this many written lines wait for the WAL, without waiting for
    /// the interval (group commit: under load, writes are acknowledged as fast as the
    /// disk syncs)
    #[arg(long, env = "SLUICE_WAL_MAX_PENDING_LINES", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    wal_max_pending_lines: u64,
    /// The WAL files a snapshot covers that are kept, in MiB, because a WAL trigger has
    /// not processed them yet. A trigger that falls further behind skips the oldest
    /// flushes, each named as an ERROR in its log and counted in
    /// `sluice_plugin_skipped_flushes_total`; 0 keeps none past its snapshot
    #[arg(long, env = "SLUICE_WAL_RETENTION_MIB", default_value_t = sluice_storage::DEFAULT_WAL_RETENTION_BYTES >> 20)]
    wal_retention_mib: u64,
    /// The rows a WAL trigger's call gets at most when it is behind and several flushes
    /// are merged into one call (a larger flush is delivered whole)
    #[arg(long, env = "SLUICE_WAL_ROWS_PER_CALL", default_value_t = sluice_engine::manager::DEFAULT_ROWS_PER_CALL as u64, value_parser = clap::value_parser!(u64).range(1..))]
    wal_rows_per_call: u64,
    /// How much nicer (lower in CPU priority) than the server the threads running WAL
    /// and schedule triggers' plugins are, from 0 to 19: no client waits for those
    /// calls, so on a busy machine ingest, queries and request triggers go first, and on
    /// an idle one the plugins take all the CPU. 0 runs them at the server's priority
    #[arg(long, env = "SLUICE_BACKGROUND_NICENESS", value_name = "NICE", default_value_t = sluice_engine::background::DEFAULT_NICENESS, value_parser = clap::value_parser!(u8).range(0..=19))]
    background_niceness: u8,
    /// Identifies this node: the prefix of its files on the object store
    #[arg(long, env = "INFLUXDB3_NODE_IDENTIFIER_PREFIX", default_value = sluice_storage::DEFAULT_NODE_ID)]
    node_id: String,
    /// Largest request body in bytes, after decompression; larger ones get 413
    #[arg(
        long,
        env = "INFLUXDB3_MAX_HTTP_REQUEST_SIZE",
        default_value_t = 10_485_760
    )]
    max_http_request_size: usize,
    /// Directory of the plugin files triggers name; triggers cannot be created without it
    #[arg(long, env = "INFLUXDB3_PLUGIN_DIR")]
    plugin_dir: Option<PathBuf>,
    /// Accept only these kinds of trigger (comma-separated): wal (or wal_flush),
    /// schedule, request; all by default
    #[arg(
        long,
        env = "INFLUXDB3_RESTRICT_PLUGIN_TRIGGERS_TO",
        value_enum,
        value_delimiter = ','
    )]
    restrict_plugin_triggers_to: Option<Vec<TriggerKind>>,
    /// Where `gh:PATH` plugins are fetched from, when a trigger using one is created: the
    /// URL of PATH is this URL followed by PATH
    #[arg(long, env = "INFLUXDB3_PLUGIN_REPO", default_value = DEFAULT_PLUGIN_REPO)]
    plugin_repo: String,
    /// What may run plugins (comma-separated). `wasm`, the WebAssembly sandbox, is
    /// always on, and the only runtime a database token may choose. `pyo3` also runs the
    /// plugins of the triggers the admin creates with `--runtime pyo3` on the machine's
    /// CPython, in the server's process, as upstream does: with NO sandbox, so no CPU-time,
    /// memory or wall-time limit, and the files and network of the server's user. For
    /// trusted plugins that need native packages the sandbox cannot load
    #[arg(
        long,
        env = "SLUICE_PLUGIN_RUNTIMES",
        value_enum,
        value_delimiter = ',',
        default_value = "wasm"
    )]
    plugin_runtimes: Vec<RuntimeKind>,
    /// With the pyo3 runtime: the virtual environment that `sluice install package
    /// --runtime pyo3` installs into (any package, native ones included) and its plugins
    /// import from; made with the Python the runtime links when first needed. Default:
    /// `.venv` in the plugin directory
    #[arg(long, env = "VIRTUAL_ENV", value_name = "DIR")]
    virtual_env_location: Option<PathBuf>,
    /// How `sluice install package` installs plugin packages: with pip (`python3 -m pip`,
    /// or `$PYTHON -m pip`, into .packages in the plugin directory; `discover` and `uv`
    /// mean the same), or not at all
    #[arg(
        long,
        env = "INFLUXDB3_PACKAGE_MANAGER",
        value_enum,
        default_value = "discover"
    )]
    package_manager: PackageManagerKind,
    /// The longest one package install may take; pip still running then is stopped, the
    /// install answered 504, and nothing installed. Installs run one at a time
    #[arg(long, env = "SLUICE_PACKAGE_INSTALL_TIMEOUT", default_value = "10m", value_parser = positive_duration)]
    package_install_timeout: Duration,
    #[command(flatten, next_help_heading = "Plugin limits (per invocation)")]
    limits: LimitArgs,
    /// Maximum bytes of keys and values in each database's shared plugin cache
    /// (`cache.put(…, use_global=True)`); a put beyond it raises in the plugin
    #[arg(long, env = "SLUICE_MAX_SHARED_CACHE_BYTES", value_name = "BYTES", default_value_t = sluice_engine::cache::DEFAULT_SHARED_BOUND, help_heading = "Plugin limits (per database)")]
    max_shared_cache_bytes: u64,
    /// Triggers each database may have; more are refused (403). A database may be given
    /// its own quotas: `sluice update database`
    #[arg(long, env = "SLUICE_MAX_TRIGGERS_PER_DATABASE", default_value_t = Quotas::DEFAULT.triggers, help_heading = "Plugin limits (per database)")]
    max_triggers_per_database: u64,
    /// Bytes of plugin files each database's own plugin area may hold; an upload beyond
    /// it is refused (403)
    #[arg(long, env = "SLUICE_MAX_PLUGIN_BYTES_PER_DATABASE", value_name = "BYTES", default_value_t = Quotas::DEFAULT.plugin_bytes, help_heading = "Plugin limits (per database)")]
    max_plugin_bytes_per_database: u64,
    /// Invocations of one database's triggers that may run at once: a request trigger's
    /// call beyond it waits up to 1 s for one to end, then is answered 429; a WAL or
    /// schedule trigger's waits its turn
    #[arg(long, env = "SLUICE_MAX_CONCURRENT_INVOCATIONS_PER_DATABASE", default_value_t = Quotas::DEFAULT.concurrent_invocations, help_heading = "Plugin limits (per database)")]
    max_concurrent_invocations_per_database: u64,
    /// Bytes the caches of one database's triggers and its shared cache may hold
    /// together; a put beyond it raises in the plugin
    #[arg(long, env = "SLUICE_MAX_CACHE_BYTES_PER_DATABASE", value_name = "BYTES", default_value_t = Quotas::DEFAULT.cache_bytes, help_heading = "Plugin limits (per database)")]
    max_cache_bytes_per_database: u64,
    /// Bytes a database's own package environment may hold; an install past it is
    /// refused (403) and the environment stays as it was
    #[arg(long, env = "SLUICE_MAX_PACKAGE_BYTES_PER_DATABASE", value_name = "BYTES", default_value_t = Quotas::DEFAULT.package_bytes, help_heading = "Plugin limits (per database)")]
    max_package_bytes_per_database: u64,
    /// Lines of line protocol one invocation of a database's triggers may write, batched
    /// and immediate writes together; the write that would pass it raises in the plugin
    #[arg(long, env = "SLUICE_MAX_WRITES_PER_INVOCATION", value_name = "LINES", default_value_t = Quotas::DEFAULT.writes_per_invocation, help_heading = "Plugin limits (per database)")]
    max_writes_per_invocation: u64,
    #[command(flatten, next_help_heading = "Query limits")]
    query: QueryArgs,
    /// Run every plugin call on a fresh sandbox instance, so that nothing stays in
    /// memory between two calls of a trigger (about 1 ms more per call). By default each
    /// trigger keeps its own instances loaded; they are never shared between triggers
    #[arg(long, env = "SLUICE_FRESH_INSTANCES")]
    fresh_instances: bool,
    /// Plugin instances alive at once, running a call or kept warm (about 2.5 MiB of
    /// memory each once called, and address space reserved up front). With all alive,
    /// a call evicts the least recently used idle instance, or waits for a running one.
    /// Default: one per 64 MiB of the machine's memory (or of the server's control
    /// group's limit, where lower), from 16 to 1,000
    #[arg(long, env = "SLUICE_MAX_INSTANCES", default_value_t = SandboxConfig::default_max_instances(), value_parser = clap::value_parser!(u32).range(1..=i64::from(SandboxConfig::MAX_INSTANCES)), help_heading = "Plugin instances")]
    max_instances: u32,
    /// Linear memory the idle (warm) instances may hold together; past it the least
    /// recently used are dropped (at least 16 MiB: about what one holds). Default: a
    /// quarter of the machine's memory
    #[arg(long, env = "SLUICE_INSTANCE_MEMORY_BUDGET", value_name = "BYTES", default_value_t = sluice_sandbox::machine_memory_bytes() / 4, value_parser = clap::value_parser!(u64).range(16 << 20..), help_heading = "Plugin instances")]
    instance_memory_budget: u64,
    /// How long an instance is kept warm without a call; then it is dropped, so an idle
    /// trigger holds no instance (its next call pays for a fresh one, a few ms)
    #[arg(long, env = "SLUICE_INSTANCE_IDLE_TIME", default_value = "60s", value_parser = positive_duration, help_heading = "Plugin instances")]
    instance_idle_time: Duration,
    /// How long a call waits for an instance when every one is running a call; then a
    /// request trigger's call is answered 503 with Retry-After, and a WAL or schedule
    /// trigger's call is tried again later
    #[arg(long, env = "SLUICE_INSTANCE_WAIT", default_value = "10s", value_parser = positive_duration, help_heading = "Plugin instances")]
    instance_wait: Duration,
    /// Spare instances kept ready: the Python runtime started and warmed up, no plugin
    /// loaded. A call without a warm instance loads its plugin into one (about 0.3 ms
    /// instead of 1.2) and the server makes another in the background, from idle CPU
    /// only. Each holds one of --max-instances. Default: 2, or one per 8 of
    /// --max-instances when that is fewer; 0 for none
    #[arg(long, env = "SLUICE_SPARE_INSTANCES", value_name = "COUNT", value_parser = clap::value_parser!(u32).range(0..=64), help_heading = "Plugin instances")]
    spare_instances: Option<u32>,
    /// Let Linux map the Python runtime's memory image 64 KiB at a time, as it does for
    /// file mappings by default ("fault-around"). Each warm instance then maps about 8
    /// MiB more of the image: pages the machine holds once, but RSS counts them once per
    /// instance. Without this flag the server turns fault-around off for the image
    /// (through a userfaultfd, Linux 6.7 or later) and an instance maps only the pages it
    /// touches
    #[arg(long, env = "SLUICE_IMAGE_FAULT_AROUND", value_parser = clap::builder::FalseyValueParser::new(), help_heading = "Plugin instances")]
    image_fault_around: bool,
    /// Let each fresh instance fault in the pages of its memory one at a time, as it
    /// first touches them. Without this flag the server learns once, from a plugin of its
    /// own, which pages a call touches, and has them mapped in each fresh instance before
    /// it runs, a few hundred system calls instead of a fault per page: a first call from
    /// nothing in about half the time
    #[arg(long, env = "SLUICE_NO_MAP_AHEAD", value_parser = clap::builder::FalseyValueParser::new(), help_heading = "Plugin instances")]
    no_map_ahead: bool,
    /// Bytes the plugins' running calls may write in their /tmp together (each call
    /// also has its own limit, --max-tmp-bytes; what it wrote is removed when it ends).
    /// Default: a sixteenth of the machine's memory, and at most half of what
    /// --plugin-tmp-dir has free
    #[arg(
        long,
        env = "SLUICE_PLUGIN_TMP_BUDGET",
        value_name = "BYTES",
        help_heading = "Plugin instances"
    )]
    plugin_tmp_budget: Option<u64>,
    /// Where each plugin instance's /tmp is made, in a directory of the server's own
    /// (`sluice-plugin-tmp-<pid>-…`, locked while the server runs; one a stopped server
    /// left is removed by the next started here). Default: /dev/shm (memory) where the
    /// machine has it, else the system's temporary directory
    #[arg(
        long,
        env = "SLUICE_PLUGIN_TMP_DIR",
        value_name = "DIR",
        help_heading = "Plugin instances"
    )]
    plugin_tmp_dir: Option<PathBuf>,
    /// Where plugins may send HTTP requests: `[scheme://]host:port`, or
    /// `*.domain:port` for every name below a domain (repeatable, or comma-separated).
    /// A trigger reaches only the destinations it is granted (`create trigger
    /// --allow-host`), and only within this list, the admin's triggers too. The host
    /// makes the connections and does TLS. A name listed here may resolve to any
    /// address; one allowed through a wildcard only to public ones. Default: empty,
    /// no outbound HTTP
    #[arg(
        long,
        env = "SLUICE_EGRESS_ALLOW",
        value_name = "HOST:PORT",
        value_delimiter = ',',
        help_heading = "Plugin egress"
    )]
    egress_allow: Vec<sluice_catalog::HostGrant>,
    /// Root certificates (PEM) that plugins' HTTPS requests trust besides the machine's
    #[arg(
        long,
        env = "SLUICE_EGRESS_CA_FILE",
        value_name = "FILE",
        help_heading = "Plugin egress"
    )]
    egress_ca_file: Option<PathBuf>,
    /// Serve every request without a token. Without this flag, requests need the admin
    /// token or a database token (`sluice create token --help`); health checks never do
    #[arg(long, env = "INFLUXDB3_START_WITHOUT_AUTH")]
    without_auth: bool,
    /// Write the address actually bound to this file once listening (for port 0)
    #[arg(long)]
    tcp_listener_file_path: Option<PathBuf>,
}

/// What every SQL query may spend, from HTTP or from a plugin.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// Memory all running queries may hold together, in MiB: sorts, joins and
    /// aggregations stop with 429 (try again later) when it is taken
    #[arg(long, env = "SLUICE_QUERY_MEMORY_POOL_MIB", value_name = "MIB", default_value_t = (QueryLimits::DEFAULT_SERVER_MEMORY_BYTES >> 20) as u64, value_parser = clap::value_parser!(u64).range(1..))]
    query_memory_pool_mib: u64,
    /// Memory one query may hold, in MiB; a query needing more fails with 400 (nothing
    /// spills to disk)
    #[arg(long, env = "SLUICE_QUERY_MEMORY_LIMIT_MIB", value_name = "MIB", default_value_t = (QueryLimits::DEFAULT_QUERY_MEMORY_BYTES >> 20) as u64, value_parser = clap::value_parser!(u64).range(1..))]
    query_memory_limit_mib: u64,
    /// How long one query may run, its answer's streaming included; a plugin's query
    /// also ends with the plugin's wall time
    #[arg(long, env = "SLUICE_QUERY_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = positive_duration)]
    query_timeout: Duration,
    /// While the server's resident memory is over this, in MiB, queries stop reading
    /// rows and fail with 429 (try again later): the last guard for what no pool
    /// counts. Default: four fifths of the machine's (or its control group's) memory
    #[arg(long, env = "SLUICE_QUERY_PROCESS_MEMORY_MIB", value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    query_process_memory_mib: Option<u64>,
}

impl QueryArgs {
    fn limits(&self) -> QueryLimits {
        let bytes = |mib: u64| usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        QueryLimits {
            server_memory_bytes: bytes(self.query_memory_pool_mib),
            query_memory_bytes: bytes(self.query_memory_limit_mib),
            timeout: self.query_timeout,
            process_memory_bytes: self
                .query_process_memory_mib
                .map_or_else(sluice_query::watch::default_process_bound, |mib| {
                    mib.saturating_mul(1 << 20)
                }),
        }
    }
}

/// Values of `--package-manager`, as upstream's.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PackageManagerKind {
    /// pip
    Discover,
    /// pip
    Pip,
    /// pip (upstream's value)
    Uv,
    /// Refuse installs (403)
    Disabled,
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration: Duration = text
        .parse::<humantime::Duration>()
        .map_err(|e| format!("invalid duration `{text}`: {e}"))?
        .into();
    if duration.is_zero() {
        return Err("the duration must be more than zero".into());
    }
    Ok(duration)
}

impl ServeArgs {
    /// Runs the server until Ctrl-C.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_stack_size(sluice_query::QUERY_THREAD_STACK_BYTES)
            .build()
            .context("cannot start the async runtime")?;
        // Built, and dropped, outside the async runtime, as a runtime must be.
        let background = sluice_engine::background::runtime(
            self.background_niceness,
            runtime.metrics().num_workers(),
            sluice_query::QUERY_THREAD_STACK_BYTES,
        )
        .context("cannot start the threads for WAL and schedule triggers")?;
        runtime.block_on(self.serve(background.handle().clone()))?;
        Ok(ExitCode::SUCCESS)
    }

    /// How many spare instances to keep: as asked, or the default for the instances.
    /// Outbound HTTP within `--egress-allow`, trusting `--egress-ca-file`.
    fn egress(&self) -> anyhow::Result<Egress> {
        let extra_roots = match &self.egress_ca_file {
            Some(path) => std::fs::read(path)
                .with_context(|| format!("cannot read --egress-ca-file {}", path.display()))?,
            None => Vec::new(),
        };
        Egress::new(self.egress_allow.clone(), &extra_roots)
            .map_err(|e| anyhow::anyhow!("--egress-ca-file: {e}"))
    }

    fn spare_instances(&self) -> anyhow::Result<usize> {
        let spares = match self.spare_instances {
            Some(spares) if spares >= self.max_instances => bail!(
                "--spare-instances {spares} would leave no instance for calls: it must be \
                 below --max-instances ({})",
                self.max_instances
            ),
            Some(spares) => spares,
            None => (self.max_instances / 8).min(DEFAULT_SPARE_INSTANCES),
        };
        Ok(usize::try_from(spares).unwrap_or(usize::MAX))
    }

    /// The quotas of each database unless it has its own.
    fn quotas(&self) -> anyhow::Result<Quotas> {
        let quotas = Quotas {
            triggers: self.max_triggers_per_database,
            plugin_bytes: self.max_plugin_bytes_per_database,
            concurrent_invocations: self.max_concurrent_invocations_per_database,
            cache_bytes: self.max_cache_bytes_per_database,
            package_bytes: self.max_package_bytes_per_database,
            writes_per_invocation: self.max_writes_per_invocation,
        };
        quotas.check().context("invalid per-database quotas")?;
        Ok(quotas)
    }

    fn store(&self) -> StoreConfig {
        match self.object_store {
            ObjectStoreKind::File => StoreConfig::File(self.data_dir.clone()),
            ObjectStoreKind::Memory => StoreConfig::Memory,
            ObjectStoreKind::S3 => StoreConfig::S3(S3Config {
                bucket: self.s3.bucket.clone().unwrap_or_default(),
                region: self.s3.aws_default_region.clone(),
                endpoint: self.s3.aws_endpoint.clone(),
                access_key_id: self.s3.aws_access_key_id.clone(),
                secret_access_key: self.s3.aws_secret_access_key.clone(),
                session_token: self.s3.aws_session_token.clone(),
                allow_http: self.s3.aws_allow_http,
            }),
        }
    }

    /// The pyo3 runtime's package environment, when the runtime is on (with a plugin
    /// directory).
    fn virtual_env(&self) -> Option<VirtualEnv> {
        if !self.plugin_runtimes.contains(&RuntimeKind::Pyo3) {
            return None;
        }
        let plugin_dir = self.plugin_dir.as_ref()?;
        Some(VirtualEnv {
            location: self
                .virtual_env_location
                .clone()
                .unwrap_or_else(|| plugin_dir.join(".venv")),
            python: pyo3_python().to_string(),
        })
    }

    /// With `--plugin-dir`: the sandbox (its Python runtime compiled, or loaded from the
    /// artifact cache) and the triggers it runs, fed by each flush.
    async fn engine(
        &self,
        storage: &Arc<WriteBuffer>,
        query: &QueryEngine,
        plugins: Option<&Arc<PluginAreas>>,
        background: tokio::runtime::Handle,
    ) -> anyhow::Result<Option<Arc<ProcessingEngine>>> {
        let Some(plugins) = plugins else {
            return Ok(None);
        };
        let plugin_dir = plugins.shared().root();
        let mut config = SandboxConfig {
            max_instances: self.max_instances,
            idle_memory_bytes: self.instance_memory_budget,
            idle_time: self.instance_idle_time,
            instance_wait: self.instance_wait,
            image_fault_around: self.image_fault_around,
            map_ahead: !self.no_map_ahead,
            max_tmp_bytes: self.plugin_tmp_budget,
            ..SandboxConfig::default()
        };
        if let Some(dir) = &self.plugin_tmp_dir {
            config.tmp_dir.clone_from(dir);
        }
        let epoch_tick = config.epoch_tick;
        let limits = self.limits.limits();
        limits
            .check(config.max_memory_bytes)
            .context("invalid plugin limits")?;
        tracing::info!(plugin_dir = %plugin_dir.display(), "starting the plugin sandbox");
        let sandbox = tokio::task::spawn_blocking(move || Sandbox::new(config))
            .await
            .context("the sandbox did not start")?
            .context("cannot start the plugin sandbox")?;
        // What the first fresh instance would learn, learnt before the first call.
        sandbox.learn_touched_pages().await;
        let database = PluginDatabase {
            storage: Arc::clone(storage),
            query: query.clone(),
        };
        let mut invoker = Invoker::new(
            Arc::new(sandbox),
            Arc::new(database),
            Arc::new(CacheStore::new(self.max_shared_cache_bytes)),
            Arc::clone(plugins),
            limits,
            !self.fresh_instances,
        )
        .with_quotas(Arc::clone(storage.catalog()), self.quotas()?)
        .with_fair_turns(FairTurns::new(
            usize::try_from(self.max_instances).unwrap_or(usize::MAX),
            self.instance_wait,
        ))
        .with_cpu_turns(FairTurns::cpu(
            tokio::runtime::Handle::current().metrics().num_workers(),
            epoch_tick,
        ))
        .with_background(background)
        .with_egress(self.egress()?);
        if let Some(env) = self.virtual_env() {
            invoker = invoker.with_pyo3(pyo3_runtime(Some(site_packages(&env)))?);
        }
        let invoker = Arc::new(invoker);
        invoker.keep_spares(self.spare_instances()?);
        let weak_storage = Arc::downgrade(storage);
        let disable = move |database: &str, trigger: sluice_catalog::TriggerId| {
            let storage = weak_storage.upgrade().ok_or("the server is stopping")?;
            storage
                .change_catalog(|c| c.disable_trigger(database, trigger))
                .map_err(|e| e.to_string())
        };
        let (cursors, unreadable) = Cursors::open(self.data_dir.join(CURSORS_FILE));
        if let Some(problem) = unreadable {
            tracing::error!("{problem}");
        }
        let feed = WalFeed {
            wal: Arc::new(StorageWal(Arc::downgrade(storage))),
            cursors,
            rows_per_call: usize::try_from(self.wal_rows_per_call).unwrap_or(usize::MAX),
        };
        let engine = ProcessingEngine::start(
            Arc::clone(storage.catalog()),
            storage.catalog_store().subscribe(),
            invoker,
            disable,
            feed,
        );
        storage.set_flush_observer(Arc::new(FlushFeed(Arc::clone(&engine.triggers))));
        Ok(Some(engine))
    }

    async fn serve(self, background: tokio::runtime::Handle) -> anyhow::Result<()> {
        if self.plugin_runtimes.contains(&RuntimeKind::Pyo3) && self.plugin_dir.is_none() {
            tracing::warn!("--plugin-runtimes pyo3 does nothing without --plugin-dir");
        }
        // Before anything sizes its share of it: the plugins take half, connections a
        // quarter, and the rest is the WAL's, the stores' and the server's own.
        let open_files = sluice_sandbox::raise_open_file_limit();
        tracing::debug!(?open_files, "the process's limit on open files");
        let http_limits = HttpLimits {
            max_connections: self.max_http_connections.map_or_else(
                || default_connections(open_files),
                |n| usize::try_from(n).unwrap_or(usize::MAX),
            ),
            header_timeout: self.http_header_timeout,
        };
        let store = self
            .store()
            .open()
            .map_err(anyhow::Error::msg)
            .context("cannot open the object store")?;
        let config = StorageConfig {
            data_dir: self.data_dir.clone(),
            snapshots: Snapshots::new(store, &self.node_id)
                .with_local_root(self.store().local_root()),
            policy: SnapshotPolicy {
                rows: self.snapshot_rows,
                interval: self.snapshot_interval,
            },
            limits: BufferLimits {
                memory_bytes: usize::try_from(self.buffer_memory_mib.saturating_mul(1 << 20))
                    .unwrap_or(usize::MAX),
                max_columns_per_table: usize::try_from(self.max_columns_per_table)
                    .unwrap_or(usize::MAX),
            },
            wal_retention_bytes: self.wal_retention_mib.saturating_mul(1 << 20),
        };
        tracing::info!(data_dir = %self.data_dir.display(), node_id = %self.node_id, object_store = ?self.object_store, "opening the database");
        let (storage, recovery) = WriteBuffer::open(config)
            .await
            .with_context(|| format!("cannot open the database in {}", self.data_dir.display()))?;
        tracing::info!(
            parquet_files = recovery.parquet_files,
            wal_files = recovery.files,
            covered_wal_files = recovery.covered_files,
            rows = recovery.rows,
            problems = recovery.problems.len(),
            "loaded the snapshots and replayed the WAL"
        );
        if !recovery.problems.is_empty() {
            tracing::warn!(
                "{} problems with the stored data were found and logged above; nothing was \
                 deleted. `sluice show storage-problems` lists them, \
                 `sluice delete unreferenced-files` removes the files nothing refers to",
                recovery.problems.len()
            );
        }
        let plugin_dir = match &self.plugin_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("cannot create the plugin directory {}", dir.display())
                })?;
                Some(Arc::new(plugin_areas(dir, &self.data_dir)?))
            }
            None => None,
        };
        // One engine, so plugins' and clients' queries draw on one memory pool.
        let mut query = QueryEngine::with_limits(storage.clone(), self.query.limits());
        let engine = self
            .engine(&storage, &query, plugin_dir.as_ref(), background)
            .await?;
        // Once the engine tells the storage which WAL files its triggers still need: a
        // snapshot before that would remove them.
        let flusher = storage.spawn_flusher(
            self.wal_flush_interval,
            usize::try_from(self.wal_max_pending_lines).unwrap_or(usize::MAX),
        );
        if let Some(engine) = &engine {
            query = query.with_engine(engine);
        }
        if let Some(dir) = &plugin_dir {
            query = query.with_plugin_dir(Arc::clone(dir));
        }
        let state = AppState {
            storage: storage.clone(),
            query,
            max_request_bytes: self.max_http_request_size,
            body_timeout: self.http_body_timeout,
            body_memory: Arc::new(tokio::sync::Semaphore::new(self.body_memory_kib())),
            authentication: if self.without_auth {
                Authentication::Disabled
            } else {
                Authentication::Required
            },
            plugin_dir,
            plugin_repo: Some(Arc::new(
                PluginRepo::new(&self.plugin_repo).map_err(anyhow::Error::msg)?,
            )),
            allowed_triggers: self
                .restrict_plugin_triggers_to
                .as_ref()
                .map(|kinds| kinds.iter().map(|k| k.plugin_type()).collect()),
            engine,
            virtual_env: self.virtual_env(),
            package_manager: match self.package_manager {
                PackageManagerKind::Disabled => PackageManager::Disabled,
                _ => PackageManager::Pip {
                    python: std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string()),
                    timeout: self.package_install_timeout,
                },
            },
        };
        if self.without_auth {
            tracing::warn!(
                "authentication is off (--without-auth): every client may read, write and administer"
            );
        } else if storage.catalog().token_records().is_empty() {
            tracing::info!(
                "requests need a token: create the admin token with `sluice create token --admin`"
            );
        }
        let listener = tokio::net::TcpListener::bind(self.http_bind)
            .await
            .with_context(|| format!("cannot listen on {}", self.http_bind))?;
        let address = listener.local_addr()?;
        if let Some(path) = &self.tcp_listener_file_path {
            std::fs::write(path, address.to_string())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        tracing::info!("listening on http://{address}");
        let stopping = Arc::new(tokio::sync::Notify::new());
        let signalled = Arc::clone(&stopping);
        let serving = listen::serve(listener, router(state), http_limits, async move {
            stop_signal().await;
            signalled.notify_one();
        });
        let drained = async {
            stopping.notified().await;
            tracing::info!(
                "stopping: no new connections; requests under way have {}",
                humantime::format_duration(self.shutdown_timeout)
            );
            tokio::time::sleep(self.shutdown_timeout).await;
        };
        tokio::select! {
            () = serving => {}
            () = drained => tracing::warn!(
                "connections still open after {}: closed",
                humantime::format_duration(self.shutdown_timeout)
            ),
        }
        flusher.abort();
        storage.flush().await.context("the final flush failed")?;
        tracing::info!("stopped");
        Ok(())
    }
}

impl ServeArgs {
    /// `--max-http-body-memory-mib` in KiB, and never less than one largest body.
    fn body_memory_kib(&self) -> usize {
        let asked = usize::try_from(self.max_http_body_memory_mib.saturating_mul(1 << 10))
            .unwrap_or(usize::MAX);
        asked
            .max(self.max_http_request_size.div_ceil(1024) + 1)
            .min(tokio::sync::Semaphore::MAX_PERMITS)
    }
}

/// A quarter of the process's limit on open files, at most 16,384 (and at least 16).
fn default_connections(open_files: Option<u64>) -> usize {
    let quarter = open_files.map_or(16_384, |nofile| nofile / 4);
    usize::try_from(quarter.clamp(16, 16_384)).unwrap_or(16_384)
}

/// SIGINT (Ctrl-C) or SIGTERM (what `systemd` and `docker stop` send).
async fn stop_signal() {
    let mut terminate = match tokio::signal::unix::signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM ({e}); only SIGINT stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Where the WAL triggers' cursors are kept, in the data directory.
const CURSORS_FILE: &str = "wal-trigger-cursors.json";

/// The shared plugin directory `plugin_dir`, and the databases' own areas and package
/// environments, in `<data-dir>/plugin-areas` and `<data-dir>/plugin-environments`.
/// Neither of those may be inside the plugin directory or hold it: a name of a shared
/// plugin must never reach a database's files, nor a database's name the shared ones.
fn plugin_areas(plugin_dir: &Path, data_dir: &Path) -> anyhow::Result<PluginAreas> {
    let areas = data_dir.join("plugin-areas");
    let environments = data_dir.join("plugin-environments");
    let canonical = |path: &Path| {
        std::fs::create_dir_all(path)
            .and_then(|()| std::fs::canonicalize(path))
            .with_context(|| format!("cannot create {}", path.display()))
    };
    let shared = canonical(plugin_dir)?;
    for own in [&areas, &environments] {
        let own_canonical = canonical(own)?;
        if shared.starts_with(&own_canonical) || own_canonical.starts_with(&shared) {
            bail!(
                "the plugin directory {} and {} must not be inside one another: choose a \
                 --plugin-dir outside the data directory's plugin-areas and \
                 plugin-environments",
                plugin_dir.display(),
                own.display()
            );
        }
    }
    Ok(PluginAreas::new(
        plugin_dir.to_path_buf(),
        areas,
        environments,
    ))
}

/// The pyo3 runtime, started: the machine's CPython in this process, its plugins
/// importing the packages of `packages`.
#[cfg(feature = "pyo3")]
pub(crate) fn pyo3_runtime(
    packages: Option<PathBuf>,
) -> anyhow::Result<Arc<dyn sluice_plugin_api::PluginExecutor>> {
    let runtime =
        sluice_pyo3::Pyo3Runtime::start(packages).context("cannot start the pyo3 runtime")?;
    tracing::warn!(
        python = sluice_pyo3::Pyo3Runtime::python_version(),
        "the pyo3 runtime is on: the plugins of triggers created with --runtime pyo3 run \
         in this process without a sandbox"
    );
    Ok(Arc::new(runtime))
}

/// This build has no pyo3 runtime.
#[cfg(not(feature = "pyo3"))]
pub(crate) fn pyo3_runtime(
    packages: Option<PathBuf>,
) -> anyhow::Result<Arc<dyn sluice_plugin_api::PluginExecutor>> {
    let _ = packages;
    anyhow::bail!(
        "this sluice was built without the pyo3 runtime: build it with the `pyo3` feature \
         (on by default), on a machine with python3 and its shared library"
    )
}

/// The Python the pyo3 runtime links (`python3` without the runtime).
fn pyo3_python() -> &'static str {
    #[cfg(feature = "pyo3")]
    return sluice_pyo3::Pyo3Runtime::python_executable();
    #[cfg(not(feature = "pyo3"))]
    "python3"
}

/// Where the pyo3 runtime's plugins find the packages of `env`.
fn site_packages(env: &VirtualEnv) -> PathBuf {
    #[cfg(feature = "pyo3")]
    let version = sluice_pyo3::Pyo3Runtime::python_version();
    #[cfg(not(feature = "pyo3"))]
    let version = "3";
    sluice_http::virtual_env::site_packages(&env.location, version)
}
