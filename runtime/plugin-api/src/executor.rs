//! Running a plugin call, whatever executes it.

use crate::{BoxFuture, HostServices, HttpResponse, LimitKind, Limits, PluginCall};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Which plugin to run: a file or a package directory inside a plugin directory, and
/// the installed packages it may import.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PluginRef {
    /// The directory the plugin is in: the server's plugin directory, or a database's
    /// area of it. The plugin sees only its own file or package of it.
    pub plugin_dir: PathBuf,
    /// The path of a `.py` file, or of a directory holding `__init__.py`, relative to
    /// `plugin_dir`.
    pub name: String,
    /// The installed packages, which the plugin sees read-only.
    pub packages: PathBuf,
    /// The packages installed for the plugin's database, which it sees read-only and
    /// imports first.
    pub database_packages: Option<PathBuf>,
}

impl PluginRef {
    /// The plugin `name` of the plugin directory `plugin_dir`, with the packages
    /// installed there ([`PACKAGES_DIR`](crate::PACKAGES_DIR)).
    pub fn new(plugin_dir: PathBuf, name: String) -> Self {
        let packages = plugin_dir.join(crate::PACKAGES_DIR);
        Self {
            plugin_dir,
            name,
            packages,
            database_packages: None,
        }
    }
}

/// What one successful invocation did and consumed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Invocation {
    /// The response, for request calls.
    pub response: Option<HttpResponse>,
    /// Time from the start of the call to its end, instantiation included.
    pub duration: Duration,
    /// Largest linear memory the instance reached, in bytes.
    pub peak_memory_bytes: u64,
    /// Line-protocol bytes the plugin wrote or queued.
    pub bytes_written: u64,
}

/// Why an invocation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvocationError {
    /// The plugin raised an error (or could not be loaded), or the host refused one of
    /// its calls: the message.
    #[error("{0}")]
    Plugin(String),
    /// The plugin hit a limit and was stopped; `message` names the limit and its value.
    #[error("{message}")]
    Limit {
        /// Which limit.
        kind: LimitKind,
        /// For example `CPU time limit of 5s exceeded`.
        message: String,
    },
    /// The plugin file could not be used: missing, outside the plugin directory, not UTF-8.
    #[error("{0}")]
    PluginFile(String),
    /// The plugin trapped (a WebAssembly fault such as stack exhaustion).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The executor itself failed; a bug or a resource problem of the server.
    #[error("internal error: {0}")]
    Internal(String),
    /// No instance could be had in time: every one the server may hold was running a
    /// call. The call did not start, so it may be tried again; the message names the
    /// bound and the wait.
    #[error("{0}")]
    Busy(String),
}

impl InvocationError {
    /// The error for hitting `kind` under `limits`.
    pub fn limit(kind: LimitKind, limits: &Limits) -> Self {
        Self::Limit {
            kind,
            message: limits.describe(kind),
        }
    }
}

/// Runs plugin calls. The sandbox implements it with wasmtime; a native baseline
/// implements it with an embedded interpreter.
pub trait PluginExecutor: Send + Sync {
    /// Runs `call` on `plugin` within `limits`, serving its host calls with `services`.
    /// `services.finish` is called once the call has ended.
    fn run<'a>(
        &'a self,
        plugin: &'a PluginRef,
        call: PluginCall,
        limits: &'a Limits,
        services: Arc<dyn HostServices>,
    ) -> BoxFuture<'a, Result<Invocation, InvocationError>>;

    /// The largest linear memory an instance may be given ([`Limits::memory_bytes`]).
    fn max_memory_bytes(&self) -> u64 {
        u64::MAX
    }

    /// Instances of `plugin` kept warm for one trigger, or `None` when this executor
    /// runs every call on a fresh instance.
    fn warm_pool(self: Arc<Self>, plugin: PluginRef) -> Option<Arc<dyn WarmPool>> {
        let _ = plugin;
        None
    }

    /// Keeps up to `count` spare instances ready, made in the background, so that a call
    /// without a warm instance only loads its plugin. `services` sees the pauses of
    /// making one (its turns on the CPU): before making one the executor awaits its
    /// [`HostServices::pause`], and after it calls [`HostServices::finish`]. Does
    /// nothing in an executor without spares.
    fn keep_spares(self: Arc<Self>, count: usize, services: Arc<dyn HostServices>) {
        let _ = (count, services);
    }

    /// What the executor's instances are now, for operators; `None` when it keeps none.
    fn instance_stats(&self) -> Option<InstanceStats> {
        None
    }
}

/// An executor's instances, counted for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceStats {
    /// Instances that may be alive at once.
    pub capacity: u64,
    /// Instances alive now, running a call or idle.
    pub live: u64,
    /// Instances kept warm, idle, now.
    pub idle: u64,
    /// Linear memory of the idle instances together, in bytes.
    pub idle_memory_bytes: u64,
    /// Instances made since the start.
    pub instantiated: u64,
    /// Idle instances dropped to make room (for another instance, or within the memory
    /// budget) since the start.
    pub evicted: u64,
    /// Idle instances dropped after their idle time since the start.
    pub expired: u64,
    /// Calls that waited for an instance since the start.
    pub waited: u64,
    /// Calls refused after waiting their bound for an instance since the start.
    pub refused: u64,
    /// Spare instances ready now: the runtime instantiated and warmed up, waiting to
    /// load the plugin of a call that has no warm instance.
    pub spare: u64,
    /// Spare instances made since the start.
    pub spares_made: u64,
    /// Calls that loaded their plugin into a spare instance since the start.
    pub spares_taken: u64,
    /// File plugins' compiled code kept for fresh instances now, in bytes.
    pub compiled_code_bytes: u64,
    /// Loads of a file plugin that found its compiled code since the start.
    pub compiled_code_hits: u64,
    /// Loads of a file plugin that compiled it since the start.
    pub compiled_code_misses: u64,
}

/// Instances of one plugin kept loaded for one trigger, so that a call skips
/// instantiating and loading the plugin. A pool never serves another trigger: what a
/// plugin keeps between calls stays with its trigger. An instance that trapped or hit a
/// limit is dropped, and a changed plugin file is loaded afresh.
pub trait WarmPool: Send + Sync {
    /// Runs `call` on a warm instance (or a new one) within `limits`; `services.finish`
    /// is called once the call has ended.
    fn run<'a>(
        &'a self,
        call: PluginCall,
        limits: &'a Limits,
        services: Arc<dyn HostServices>,
    ) -> BoxFuture<'a, Result<Invocation, InvocationError>>;
}
