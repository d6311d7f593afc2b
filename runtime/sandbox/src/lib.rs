//! The WebAssembly sandbox: runs Sluice plugins inside wasmtime, with limits.
//!
//! # Core concepts
//!
//! - [`Sandbox`]: one per process. It owns the wasmtime [`Engine`](wasmtime::Engine)
//!   (component model, async, epoch interruption, pooling allocator), the compiled
//!   Python runtime (loaded from the on-disk [artifact cache](ArtifactCache) when it is
//!   there, compiled and stored when it is not), and the thread that advances epochs.
//!   Cheap to share behind an `Arc`.
//! - [`PluginInstance`]: one instantiated plugin with its own store, memory and WASI
//!   context. Calls on it reuse the instance (a *warm* instance); each call gets a fresh
//!   budget of CPU time, memory growth, wall time and output. After a trap or a limit the
//!   instance is poisoned and must be dropped.
//! - [`Sandbox`] also implements [`PluginExecutor`](sluice_plugin_api::PluginExecutor):
//!   a fresh instance per call, the strongest isolation.
//!
//! # What a plugin can reach
//!
//! Nothing, unless granted: no network, no environment but `PLUGIN_DIR=/plugins` and
//! `TZ=UTC`, the plugin directory mounted read-only at `/plugins`, no other file. Clocks
//! and randomness work. stdout and stderr are captured (bounded) into the log. Every
//! host call acts through [`HostServices`](sluice_plugin_api::HostServices), which
//! decides what the plugin may query, write and cache. See `docs/sandbox.md`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use sluice_sandbox::{Sandbox, SandboxConfig};
//! let sandbox = Sandbox::new(SandboxConfig::default())?;
//! # Ok(()) }
//! ```

mod artifact_cache;
mod code_cache;
mod config;
mod epoch;
mod executor;
mod files;
mod host;
mod instance;
mod memory_pages;
mod output;
mod pool;
mod python;
mod scratch;
mod slots;
mod store_limits;
mod trim;
mod wit;

pub use artifact_cache::ArtifactCache;
pub use code_cache::CodeCacheStats;
pub use config::{SandboxConfig, machine_memory_bytes};
pub use executor::Sandbox;
pub use files::raise_open_file_limit;
pub use instance::PluginInstance;
pub use pool::InstancePool;

/// Errors setting the sandbox up (not errors of plugin calls, which are
/// [`InvocationError`](sluice_plugin_api::InvocationError)s).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine configuration was refused by wasmtime.
    #[error("invalid sandbox configuration: {0:#}")]
    Config(wasmtime::Error),
    /// The Python runtime could not be compiled or loaded.
    #[error("cannot prepare the Python runtime: {0:#}")]
    Runtime(wasmtime::Error),
}

/// Result of setting the sandbox up.
pub type Result<T, E = Error> = std::result::Result<T, E>;
