//! The pyo3 runtime: Sluice plugins on the machine's CPython, in the server's process, as
//! the upstream engine runs them. For trusted plugins that need native packages the
//! sandbox cannot load, and for comparing the two engines. **It has no sandbox**: a plugin may do
//! whatever the server's user may, and nothing stops it using the CPU, memory or time.
//!
//! # How it runs a call
//!
//! - One interpreter for the process ([`Pyo3Runtime::start`]), started once; Python
//!   code of every call takes turns on its lock (the GIL), as upstream.
//! - Each call runs on a blocking thread of the async runtime. It speaks to the host
//!   through the same door as the sandbox ([`sluice_door`]): the same Python layer
//!   (`guest-sdk/python/sluice_plugin_runtime`, with `native.py` as its entry), the same
//!   messages, the same checks and counts of every host call. The thread gives up the
//!   lock while a host call (a query, a write) waits.
//! - A single-file plugin is compiled once per trigger's plugin and run in fresh globals
//!   on every call; a package is imported once. The loaded plugin is kept while its
//!   file stays the same.
//! - Rows reach the plugin as the sandbox's do: typed columns, turned into Python
//!   objects by `marshal` in one C call, then into row dicts.
//!
//! # What it enforces
//!
//! What the host counts at the door: log lines and bytes, bytes written, and every
//! check of a host call (which databases it may query and write, the cache's bounds).
//! Not the CPU time, the memory, the wall time, nor anything else of the sandbox: a
//! trigger asking for one of those is refused when it is created
//! ([`LimitOverrides::sandbox_only`](sluice_plugin_api::LimitOverrides::sandbox_only)).
//!
//! pyo3 is the well-kept way to embed CPython in Rust; the interpreter is the machine's,
//! found when the server is built (`python3`, or `PYO3_PYTHON`), and loaded from its
//! directory when the server starts.

mod door;
mod interpreter_start;
mod layer;

use lru::LruCache;
use pyo3::prelude::*;
use sluice_door::{CallState, Outcome, Read, cut_line, encode_call, encode_load};
use sluice_plugin_api::{
    BoxFuture, CallUsage, HostServices, HttpResponse, Invocation, InvocationError, LimitKind,
    Limits, PluginCall, PluginExecutor, PluginRef, PluginSource, thread_cpu_time,
};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use tokio::runtime::Handle;

use crate::door::{Turn, with_turn};

/// Plugins kept loaded, at most (one per trigger's plugin file, most recently used).
const LOADED_PLUGINS: usize = 4096;

/// Calls that may run at once, each on a thread of its own. A call keeps its place until
/// its thread ends, even when whoever waited for it has gone (a client that hung up): so
/// calls that cannot be stopped never take more threads than this.
const CALLS_AT_ONCE: usize = 64;

/// Why the runtime could not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartError {
    /// CPython could not start: the Python the server was built with is not on this
    /// machine any more, or `PYTHONHOME` points elsewhere.
    #[error(
        "Python {version}, which the server was built with, could not start ({reason}): \
         its standard library is looked for in {stdlib}, or under PYTHONHOME when that is \
         set. Install that Python (with its shared library), rebuild Sluice against the \
         Python this machine has, or start the server without the pyo3 runtime"
    )]
    NoPython {
        /// The version the server was built with.
        version: &'static str,
        /// Where its standard library was when the server was built.
        stdlib: &'static str,
        /// CPython's own reason.
        reason: String,
    },
    /// The interpreter started, but the plugin layer could not be set up in it.
    #[error("the pyo3 runtime could not set up its Python layer: {0}")]
    Layer(String),
}

/// A plugin loaded into the interpreter, with what it was loaded from.
struct Loaded {
    source: PluginSource,
    stamp: Stamp,
    plugin: Py<PyAny>,
}

/// What changes when a package plugin's files do: each file's path, length and time of
/// change, in order (empty for a single-file plugin, whose source says it all).
type Stamp = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// Files of a package looked at for its [`Stamp`], at most.
const STAMPED_FILES: usize = 10_000;

/// The stamp of `source` in `plugin`'s directory.
fn stamp(plugin: &PluginRef, source: &PluginSource) -> Stamp {
    let PluginSource::Package(name) = source else {
        return Stamp::new();
    };
    let mut stamp = Stamp::new();
    let mut directories = vec![plugin.plugin_dir.join(name)];
    while let Some(directory) = directories.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                directories.push(entry.path());
            } else if stamp.len() < STAMPED_FILES {
                stamp.push((entry.path(), metadata.len(), metadata.modified().ok()));
            }
        }
    }
    stamp.sort();
    stamp
}

/// What the one interpreter of the process holds for the runtime.
struct Interpreter {
    /// `sluice_plugin_runtime.native`.
    native: Py<PyModule>,
    /// The directory of the packages installed for this runtime, if there is one.
    packages: Option<PathBuf>,
    loaded: Mutex<LruCache<PluginRef, Loaded>>,
    /// Places for the calls running at once ([`CALLS_AT_ONCE`]).
    calls: Arc<tokio::sync::Semaphore>,
    /// Where the Python layer was written; kept for the process's life.
    _layer: tempfile::TempDir,
}

/// The interpreter, once started: one for the process.
static INTERPRETER: OnceLock<Result<Interpreter, StartError>> = OnceLock::new();

/// Runs plugins on the process's interpreter: a [`PluginExecutor`]. Cheap to copy.
#[derive(Clone, Copy)]
pub struct Pyo3Runtime {
    interpreter: &'static Interpreter,
}

impl std::fmt::Debug for Pyo3Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pyo3Runtime")
    }
}

impl Pyo3Runtime {
    /// The process's runtime: the interpreter started, and the plugin layer loaded into
    /// it, the first time; its plugins import the packages of `packages` (a
    /// site-packages directory, which need not exist yet), as the first start says.
    ///
    /// # Errors
    ///
    /// The machine has not the Python the server was built with, or the layer could not
    /// be set up: the same error every time.
    pub fn start(packages: Option<PathBuf>) -> Result<Self, StartError> {
        match INTERPRETER.get_or_init(|| Interpreter::start(packages)) {
            Ok(interpreter) => Ok(Self { interpreter }),
            Err(error) => Err(error.clone()),
        }
    }

    /// The Python version the server was built with, `3.11` for example.
    pub fn python_version() -> &'static str {
        env!("SLUICE_PYTHON_VERSION")
    }

    /// The interpreter the server was built with, which makes the runtime's virtual
    /// environment.
    pub fn python_executable() -> &'static str {
        env!("SLUICE_PYTHON_EXECUTABLE")
    }
}

impl Interpreter {
    fn start(packages: Option<PathBuf>) -> Result<Self, StartError> {
        interpreter_start::start().map_err(|reason| StartError::NoPython {
            version: env!("SLUICE_PYTHON_VERSION"),
            stdlib: env!("SLUICE_PYTHON_STDLIB"),
            reason,
        })?;
        // Started already: this only tells pyo3 so.
        Python::initialize();
        let layer = tempfile::Builder::new()
            .prefix("sluice-python-layer-")
            .tempdir()
            .map_err(|e| StartError::Layer(format!("cannot make its directory: {e}")))?;
        layer::write_out(layer.path())
            .map_err(|e| StartError::Layer(format!("cannot write it out: {e}")))?;
        let native = Python::attach(|py| -> PyResult<Py<PyModule>> {
            let sys = py.import("sys")?;
            sys.getattr("modules")?
                .set_item("_host", door::module(py)?)?;
            sys.getattr("path")?
                .call_method1("insert", (0, layer.path().to_string_lossy()))?;
            Ok(py.import(format!("{}.native", layer::PACKAGE))?.unbind())
        })
        .map_err(|e| StartError::Layer(e.to_string()))?;
        let capacity = NonZeroUsize::new(LOADED_PLUGINS).unwrap_or(NonZeroUsize::MIN);
        Ok(Self {
            native,
            packages,
            calls: Arc::new(tokio::sync::Semaphore::new(CALLS_AT_ONCE)),
            loaded: Mutex::new(LruCache::new(capacity)),
            _layer: layer,
        })
    }

    /// Runs `call` of `plugin` (whose code is `source`) on this thread, holding the
    /// interpreter's lock but in host calls: its result, and the bytes it wrote.
    fn run(
        &self,
        plugin: &PluginRef,
        source: PluginSource,
        call: &PluginCall,
        state: CallState,
        runtime: Handle,
    ) -> (Result<Option<HttpResponse>, InvocationError>, u64) {
        let turn = Turn::new(state, runtime);
        let result = Python::attach(|py| {
            let stamp = stamp(plugin, &source);
            let loaded = match self.cached(py, plugin, &source, &stamp) {
                Some(loaded) => loaded,
                None => self.load(py, plugin, (source, stamp), &turn)?,
            };
            let message = encode_call(call);
            let expects_response = matches!(call, PluginCall::Request { .. });
            let (response, _) = run_turn(
                &turn,
                message,
                || self.native.bind(py).call_method1("serve", (loaded,)),
                |outcome| Outcome::call(outcome, expects_response),
            )?;
            Ok(response)
        });
        let bytes_written = turn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .state
            .bytes_written;
        (result, bytes_written)
    }

    /// The plugin loaded from `source` before, if it still is.
    fn cached(
        &self,
        py: Python<'_>,
        plugin: &PluginRef,
        source: &PluginSource,
        stamp: &Stamp,
    ) -> Option<Py<PyAny>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        loaded
            .get(plugin)
            .filter(|loaded| loaded.source == *source && loaded.stamp == *stamp)
            .map(|loaded| loaded.plugin.clone_ref(py))
    }

    /// Loads `plugin` from `source`, and keeps it.
    fn load(
        &self,
        py: Python<'_>,
        plugin: &PluginRef,
        (source, stamp): (PluginSource, Stamp),
        turn: &Arc<Mutex<Turn>>,
    ) -> Result<Py<PyAny>, InvocationError> {
        let root = plugin.plugin_dir.to_string_lossy().into_owned();
        // The runtime's own packages: never the sandbox's, and never a database's,
        // which its tenants install (a trigger of this runtime is the admin's, and runs
        // with the server's rights).
        let package_roots: Vec<String> = self
            .packages
            .iter()
            .filter(|dir| dir.is_dir())
            .map(|dir| dir.to_string_lossy().into_owned())
            .collect();
        let (_, loaded) = run_turn(
            turn,
            encode_load(&source, None),
            || {
                self.native
                    .bind(py)
                    .call_method1("load", (root, package_roots))
            },
            Outcome::load,
        )?;
        let loaded = loaded.unbind();
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(
                plugin.clone(),
                Loaded {
                    source,
                    stamp,
                    plugin: loaded.clone_ref(py),
                },
            );
        Ok(loaded)
    }
}

/// Runs one turn of the Python layer with `message` as its call: what `run` returned and
/// the call's outcome as `read` reads it.
fn run_turn<'py, T>(
    turn: &Arc<Mutex<Turn>>,
    message: Vec<u8>,
    run: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
    read: impl FnOnce(&[u8]) -> Read<Outcome<T>>,
) -> Result<(T, Bound<'py, PyAny>), InvocationError> {
    {
        let mut turn = turn.lock().unwrap_or_else(PoisonError::into_inner);
        turn.state.message = Some(message);
        turn.state.outcome = None;
    }
    let returned = with_turn(turn, run);
    let mut turn = turn.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(stop) = turn.stopped.take() {
        let state = &turn.state;
        return Err(match (&state.refused, state.hit) {
            (Some(refusal), _) => InvocationError::Plugin(refusal.clone()),
            (None, Some(kind)) => InvocationError::limit(kind, &state.limits),
            (None, None) => InvocationError::Plugin(cut_line(&stop.to_string())),
        });
    }
    let returned = returned.map_err(|error| {
        InvocationError::Plugin(cut_line(&format!("the plugin layer failed: {error}")))
    })?;
    let outcome = turn.state.outcome.take().ok_or_else(|| {
        InvocationError::Internal("the Python layer ended its turn without an outcome".into())
    })?;
    match read(&outcome) {
        Ok(Outcome::Done(done)) => Ok((done, returned)),
        Ok(Outcome::Failed(message)) => Err(InvocationError::Plugin(cut_line(&message))),
        Err(malformed) => Err(InvocationError::Internal(malformed.to_string())),
    }
}

impl PluginExecutor for Pyo3Runtime {
    fn run<'a>(
        &'a self,
        plugin: &'a PluginRef,
        call: PluginCall,
        limits: &'a Limits,
        services: Arc<dyn HostServices>,
    ) -> BoxFuture<'a, Result<Invocation, InvocationError>> {
        let interpreter = self.interpreter;
        Box::pin(async move {
            let started = Instant::now();
            let source = match plugin.read() {
                Ok(source) => source,
                Err(error) => {
                    services.finish(false, CallUsage::default());
                    return Err(error);
                }
            };
            let mut state = CallState::new(limits.clone());
            state.services = Some(Arc::clone(&services));
            let plugin = plugin.clone();
            let runtime = Handle::current();
            // Never closed.
            let place = Arc::clone(&interpreter.calls).acquire_owned().await;
            let thread = tokio::task::spawn_blocking(move || {
                let _place = place;
                let cpu = thread_cpu_time();
                let (result, written) = interpreter.run(&plugin, source, &call, state, runtime);
                (result, written, thread_cpu_time().saturating_sub(cpu))
            });
            let (result, bytes_written, cpu) = match thread.await {
                Ok(ran) => ran,
                Err(error) => (
                    Err(InvocationError::Internal(format!(
                        "the call's thread failed: {error}"
                    ))),
                    0,
                    Duration::ZERO,
                ),
            };
            let result = result.and_then(|response| match &response {
                Some(response) if response.body.len() as u64 > limits.response_bytes => {
                    Err(InvocationError::limit(LimitKind::ResponseBytes, limits))
                }
                _ => Ok(response),
            });
            let usage = CallUsage {
                peak_memory_bytes: 0,
                bytes_written,
                tmp_bytes: 0,
                cpu_elsewhere: cpu,
            };
            services.finish(result.is_ok(), usage);
            Ok(Invocation {
                response: result?,
                duration: started.elapsed(),
                peak_memory_bytes: 0,
                bytes_written: usage.bytes_written,
            })
        })
    }
}
