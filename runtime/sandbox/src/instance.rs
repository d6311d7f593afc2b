//! One instantiated plugin, and the budget of each call on it.

use crate::code_cache::CodeKey;
use crate::executor::Sandbox;
use crate::files::OpenFiles;
use crate::host::HostState;
use crate::memory_pages::{MemorySpan, TouchedPages};
use crate::output::CapturedOutput;
use crate::python::{ENVIRONMENT, GUEST_PLUGIN_DIR, LIBRARY_GUEST_DIR};
use crate::scratch::{GUEST_TMP_DIR, Scratch};
use crate::slots::Slot;
use crate::store_limits::MemoryLimiter;
use crate::wit::Python;
use sluice_door::{CallState, Outcome, Read, cut_line, encode_call, encode_load};
use sluice_plugin_api::{
    CallUsage, DATABASE_PACKAGES_DIR, HostServices, Invocation, InvocationError, LimitKind, Limits,
    LogLevel, PACKAGES_DIR, PluginCall, PluginExecutor, PluginRef, PluginSource,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{ResourceTable, WasmList};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

/// The plugin a spare instance loads and calls once to warm up: every entry point, doing
/// nothing.
const WARM_UP_PLUGIN: &str = "sluice_spare_warm_up.py";
const WARM_UP_CODE: &str = "\
def process_writes(influxdb3_local, table_batches, args=None):
    pass

def process_scheduled_call(influxdb3_local, call_time, args=None):
    pass

def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    return 'ok'
";

/// What each turn of the runtime runs: the guest layer's entry, which takes the call
/// through the door, runs it and hands its outcome back (`SERVE_SOURCE` in `app.py`, which
/// has the runtime call it without compiling the line).
const SERVE: &str = "_sluice_serve()";

/// The most random bytes one call for them returns: the host builds them before the
/// guest's memory limit sees them.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// A plugin loaded into its own instance.
///
/// Calls reuse the instance: module state of package plugins survives between calls
/// (as upstream), single-file plugins run in fresh globals each time. Each call has its
/// own budget. After a call that trapped or hit a limit, the instance is *poisoned*:
/// further calls fail, and the owner should drop it and instantiate again.
pub struct PluginInstance {
    store: Store<HostState>,
    bindings: Python,
    poisoned: bool,
    /// Where its linear memory lies.
    span: MemorySpan,
    /// Its linear memory once the plugin was loaded.
    fresh_bytes: u64,
    /// Its place in the sandbox's budget of live instances, given back when it drops
    /// (after the store: declared last).
    _slot: Slot,
}

/// What a call returned before its budget is settled: the plugin's error, if it failed.
type Raw<T> = wasmtime::Result<Result<T, String>>;

impl PluginInstance {
    /// Instantiates the Python runtime for `plugin` and loads its code `source`, within
    /// `limits`, for a call served by `services` if given.
    pub(crate) async fn new(
        sandbox: &Sandbox,
        source: PluginSource,
        plugin: &PluginRef,
        limits: &Limits,
        services: Option<Arc<dyn HostServices>>,
    ) -> Result<Self, InvocationError> {
        sandbox.learn_touched_pages().await;
        let slot = sandbox.slots().acquire().await?;
        let mounts = mounts(plugin, &source);
        let mut instance = Self::start(sandbox, slot, &mounts, limits, services.clone()).await?;
        instance
            .load(sandbox, source, &plugin.plugin_dir, limits, services)
            .await?;
        Ok(instance)
    }

    /// A spare: the Python runtime instantiated in `slot` and warmed up by loading and
    /// calling a plugin of the sandbox's own, ready to load any plugin
    /// ([`PluginInstance::adopt`]). `services` sees its pauses; it makes no host call.
    pub(crate) async fn spare(
        sandbox: &Sandbox,
        slot: Slot,
        services: Option<Arc<dyn HostServices>>,
    ) -> Result<Self, InvocationError> {
        let limits = Limits {
            memory_bytes: sandbox.max_memory_bytes(),
            ..Limits::default()
        };
        let mut instance = Self::start(sandbox, slot, &[], &limits, services.clone()).await?;
        let warm_up = PluginSource::File {
            name: WARM_UP_PLUGIN.into(),
            code: WARM_UP_CODE.into(),
        };
        // Its code is the sandbox's, in no plugin directory: loaded from the cache as most
        // plugins' will be, so that the spare touches the pages their loads touch.
        let no_dir = std::path::Path::new("");
        instance
            .load(sandbox, warm_up, no_dir, &limits, services)
            .await?;
        // The first call of an instance touches pages and functions that later ones
        // find ready: made here, off any call's path.
        let warm_up = PluginCall::Schedule {
            call_time_ns: 0,
            args: None,
        };
        let raw = instance
            .turn(encode_call(&warm_up), limits.wall_time, |outcome| {
                Outcome::call(outcome, false)
            })
            .await;
        instance.settle(raw)?;
        Ok(instance)
    }

    /// Loads `plugin`, its code `source`, into this spare of `sandbox`, within `limits`,
    /// for a call served by `services` if given. Nothing of the spare's own plugin stays
    /// reachable: the plugin replaces it, and its output was discarded.
    pub(crate) async fn adopt(
        &mut self,
        sandbox: &Sandbox,
        source: PluginSource,
        plugin: &PluginRef,
        limits: &Limits,
        services: Option<Arc<dyn HostServices>>,
    ) -> Result<(), InvocationError> {
        let mounts = mounts(plugin, &source);
        if !mounts.is_empty() {
            let state = self.store.data_mut();
            state.wasi = wasi_context(state, sandbox.library(), &mounts)?;
        }
        self.load(sandbox, source, &plugin.plugin_dir, limits, services)
            .await
    }

    /// Whether this spare is small enough for a plugin given `limits`.
    pub(crate) fn fits(&self, limits: &Limits) -> bool {
        self.memory_bytes() <= limits.memory_bytes
    }

    /// Instantiates the Python runtime in `slot`, with `mounts` (host path, guest path)
    /// visible read-only, within `limits`.
    async fn start(
        sandbox: &Sandbox,
        slot: Slot,
        mounts: &[(PathBuf, String)],
        limits: &Limits,
        services: Option<Arc<dyn HostServices>>,
    ) -> Result<Self, InvocationError> {
        let scratch = Scratch::new(sandbox.scratch()).map_err(|e| {
            InvocationError::Internal(format!("cannot make the plugin's /tmp: {e}"))
        })?;
        let mut table = ResourceTable::new();
        table.set_max_capacity(crate::files::handles(limits));
        let mut state = HostState {
            wasi: WasiCtx::builder().build(),
            table,
            files: OpenFiles::new(Arc::clone(sandbox.files())),
            scratch,
            limiter: MemoryLimiter::new(limits.memory_bytes),
            stdout: CapturedOutput::default(),
            stderr: CapturedOutput::default(),
            call: CallState::new(limits.clone()),
        };
        state.wasi = wasi_context(&state, sandbox.library(), mounts)?;
        let mut store = Store::new(sandbox.engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|mut context| {
            let call = &mut context.data_mut().call;
            if Instant::now() >= call.deadline {
                call.hit = Some(LimitKind::WallTime);
                return Ok(UpdateDeadline::Interrupt);
            }
            if call.cpu.used() >= call.limits.cpu_time {
                call.hit = Some(LimitKind::CpuTime);
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(match call.services.as_ref().and_then(|host| host.pause()) {
                Some(pause) => UpdateDeadline::YieldCustom(1, pause),
                None => UpdateDeadline::Yield(1),
            })
        });
        begin(&mut store, limits, services);
        let cpu = Arc::clone(&store.data().call.cpu);
        let started = within(limits.wall_time, async {
            // The list is the memory itself, never copied; wasmtime charges its length to
            // the host call's budget of bytes (128 MiB), above the span's 96 MiB.
            let instance = sandbox
                .pre()
                .instance_pre()
                .instantiate_async(&mut store)
                .await?;
            let bindings = Python::new(&mut store, &instance)?;
            let span = instance
                .get_typed_func::<(), (WasmList<u8>,)>(&mut store, sandbox.memory_span())?
                .call_async(&mut store, ())
                .await?
                .0
                .as_le_slice(&store);
            let span = MemorySpan {
                start: span.as_ptr() as usize,
                len: span.len(),
            };
            sandbox.image_pages().prepare(span);
            bindings.call_reset_preopens(&mut store).await?;
            Ok((bindings, span))
        });
        let started = cpu.time(started).await;
        let (bindings, span) = match started {
            Some(Ok(started)) => started,
            Some(Err(e)) => return Err(classify(&store, e)),
            None => return Err(InvocationError::limit(LimitKind::WallTime, limits)),
        };
        Ok(Self {
            store,
            bindings,
            poisoned: false,
            span,
            fresh_bytes: 0,
            _slot: slot,
        })
    }

    /// The pages of its memory the instance has touched so far.
    pub(crate) fn touched_pages(&self) -> std::io::Result<TouchedPages> {
        TouchedPages::of(self.span)
    }

    /// Loads the plugin's code `source`, of `plugin_dir`, within `limits`. A file plugin's
    /// comes compiled from `sandbox`'s cache of code, or its compiled code goes there.
    ///
    /// Called once per instance, before any plugin code has run in it (the runtime's only,
    /// or a spare's own plugin): what the load hands over is the runtime's work alone
    /// (`code_cache.rs`).
    async fn load(
        &mut self,
        sandbox: &Sandbox,
        source: PluginSource,
        plugin_dir: &std::path::Path,
        limits: &Limits,
        services: Option<Arc<dyn HostServices>>,
    ) -> Result<(), InvocationError> {
        begin(&mut self.store, limits, services);
        let cache = sandbox.code_cache();
        let key = CodeKey::of(plugin_dir, &source);
        let compiled = key.as_ref().and_then(|key| cache.get(key));
        let message = encode_load(&source, compiled.as_deref());
        let raw = self.turn(message, limits.wall_time, Outcome::load).await;
        let handed_over = self.settle(raw)?;
        if let (Some(key), None, Some(code)) = (key, compiled, handed_over) {
            cache.put(key, code);
        }
        self.fresh_bytes = self.store.data().limiter.total_bytes;
        Ok(())
    }

    /// The linear memory the instance holds now, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.store.data().limiter.total_bytes
    }

    /// True once a trap or a limit has stopped a call; the instance must be replaced.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Whether calls left the instance holding more than half of the room `limits` give
    /// it beyond its size when new, or holding files open. Memory a call leaves behind
    /// counts against the next call's limit: past this, the next call would have less
    /// than half the room of the same call on a fresh instance; and an idle instance
    /// should hold no descriptor of the server's.
    pub fn is_swollen(&self, limits: &Limits) -> bool {
        // Files kept open between calls count too: descriptors are the server's; and
        // what a call wrote in `/tmp` and may still hold is not for another call.
        let state = self.store.data();
        if state.files.any() || state.scratch.is_retired() {
            return true;
        }
        let held = self.store.data().limiter.total_bytes;
        let room = limits.memory_bytes.saturating_sub(self.fresh_bytes);
        held.saturating_sub(self.fresh_bytes) > room / 2
    }

    /// Runs one call within `limits`, serving host calls with `services`, and tells
    /// `services` how it ended.
    pub async fn call(
        &mut self,
        call: PluginCall,
        limits: &Limits,
        services: Arc<dyn HostServices>,
    ) -> Result<Invocation, InvocationError> {
        if self.poisoned {
            return Err(InvocationError::Internal(
                "the plugin instance was stopped by an earlier failure".into(),
            ));
        }
        let started = Instant::now();
        begin(&mut self.store, limits, Some(Arc::clone(&services)));
        let expects_response = matches!(call, PluginCall::Request { .. });
        let raw = self
            .turn(encode_call(&call), limits.wall_time, |outcome| {
                Outcome::call(outcome, expects_response)
            })
            .await;
        let result = self.settle(raw).and_then(|response| {
            if let Some(response) = &response
                && response.body.len() as u64 > limits.response_bytes
            {
                return Err(InvocationError::limit(LimitKind::ResponseBytes, limits));
            }
            Ok(response)
        });
        let state = self.store.data();
        let usage = CallUsage {
            peak_memory_bytes: state.limiter.peak_bytes,
            bytes_written: state.call.bytes_written,
            tmp_bytes: state.call.tmp_bytes,
            cpu_elsewhere: Duration::ZERO,
        };
        services.finish(result.is_ok(), usage);
        Ok(Invocation {
            response: result?,
            duration: started.elapsed(),
            peak_memory_bytes: usage.peak_memory_bytes,
            bytes_written: usage.bytes_written,
        })
    }

    /// Runs one turn of the runtime with `message` as its call, within `wall`, its polls
    /// counted on the call's CPU clock: the call's outcome as `read` reads it, or `None`
    /// when the wall time ran out.
    async fn turn<T>(
        &mut self,
        message: Vec<u8>,
        wall: Duration,
        read: impl FnOnce(&[u8]) -> Read<Outcome<T>>,
    ) -> Option<Raw<T>> {
        let call = &mut self.store.data_mut().call;
        call.message = Some(message);
        call.outcome = None;
        let cpu = Arc::clone(&call.cpu);
        let bindings = &self.bindings;
        let store = &mut self.store;
        let turn = within(wall, async move {
            let status = bindings.call_turn(&mut *store, SERVE).await?;
            match store.data_mut().call.outcome.take() {
                Some(outcome) => Ok(match read(&outcome)? {
                    Outcome::Done(done) => Ok(done),
                    Outcome::Failed(message) => Err(message),
                }),
                None => wasmtime::bail!(
                    "the Python runtime stopped without an outcome (status {status}): an \
                     exception escaped the plugin layer, its traceback is in the log"
                ),
            }
        });
        cpu.time(turn).await
    }

    /// Forwards captured output to the log and turns the outcome of a call (`None` when
    /// it ran out of wall time) into its result; poisons the instance after a trap.
    fn settle<T>(&mut self, raw: Option<Raw<T>>) -> Result<T, InvocationError> {
        forward_output(&mut self.store);
        let state = self.store.data_mut();
        let files_open = state.files.any();
        state.call.tmp_bytes = state
            .scratch
            .end_call(state.call.services.as_ref(), files_open);
        let error = match raw {
            Some(Ok(Ok(value))) => return Ok(value),
            Some(Ok(Err(message))) => {
                // Kept in the invocation records and logs: as long as a log line at most.
                return Err(InvocationError::Plugin(cut_line(&message)));
            }
            Some(Err(trap)) => classify(&self.store, trap),
            None => InvocationError::limit(LimitKind::WallTime, &self.store.data().call.limits),
        };
        self.poisoned = true;
        Err(error)
    }
}

/// The WASI context of the instance of `state`: its output captured, `mounts` (host
/// path, guest path) read-only, its own `/tmp` writable, nothing else of the host.
fn wasi_context(
    state: &HostState,
    library: &std::path::Path,
    mounts: &[(PathBuf, String)],
) -> Result<WasiCtx, InvocationError> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.envs(&ENVIRONMENT)
        .stdout(state.stdout.clone())
        .stderr(state.stderr.clone())
        .max_random_size(MAX_RANDOM_BYTES);
    // The library first: the runtime's C library found it as its first directory while
    // it was pre-initialised.
    wasi.preopened_dir(library, LIBRARY_GUEST_DIR, FsPerms::ReadOnly)
        .map_err(|e| {
            InvocationError::Internal(format!("cannot mount the runtime's library: {e:#}"))
        })?;
    wasi.preopened_dir(state.scratch.path(), GUEST_TMP_DIR, FsPerms::ReadWrite)
        .map_err(|e| InvocationError::Internal(format!("cannot mount the plugin's /tmp: {e:#}")))?;
    for (host, guest) in mounts {
        wasi.preopened_dir(host, guest, FsPerms::ReadOnly)
            .map_err(|e| {
                InvocationError::PluginFile(format!("cannot mount {guest} for the plugin: {e:#}"))
            })?;
    }
    Ok(wasi.build())
}

/// What the sandbox mounts for `plugin` (host path, guest path), read-only: the
/// installed packages (the shared ones, and its database's), and a package plugin's own
/// directory. Nothing else of the plugin
/// directory: a file plugin's code reaches the runtime as text, and other triggers'
/// plugins, the repository copies and their secrets stay out of sight.
fn mounts(plugin: &PluginRef, source: &PluginSource) -> Vec<(PathBuf, String)> {
    let mut mounts = Vec::new();
    if plugin.packages.is_dir() {
        mounts.push((
            plugin.packages.clone(),
            format!("{GUEST_PLUGIN_DIR}/{PACKAGES_DIR}"),
        ));
    }
    if let Some(own) = plugin.database_packages.as_ref().filter(|own| own.is_dir()) {
        mounts.push((
            own.clone(),
            format!("{GUEST_PLUGIN_DIR}/{DATABASE_PACKAGES_DIR}"),
        ));
    }
    if let PluginSource::Package(name) = source {
        mounts.push((
            plugin.plugin_dir.join(name),
            format!("{GUEST_PLUGIN_DIR}/{name}"),
        ));
    }
    mounts
}

/// Gives the store a fresh budget for the next call.
fn begin(store: &mut Store<HostState>, limits: &Limits, services: Option<Arc<dyn HostServices>>) {
    store.set_epoch_deadline(1);
    let state = store.data_mut();
    state.table.set_max_capacity(crate::files::handles(limits));
    state.files.begin_call();
    state.scratch.begin_call(limits.tmp_bytes);
    state.call = CallState::new(limits.clone());
    state.call.services = services;
    state.limiter.limit_bytes = limits.memory_bytes;
    state.limiter.peak_bytes = state.limiter.total_bytes;
    state.limiter.hit = None;
    let capacity = usize::try_from(limits.output_bytes).unwrap_or(usize::MAX);
    state.stdout.reset(capacity);
    state.stderr.reset(capacity);
}

/// Names the cause of a trap: the host's refusal of a call, the limit that was hit, else
/// the trap itself.
fn classify(store: &Store<HostState>, error: wasmtime::Error) -> InvocationError {
    let state = store.data();
    if let Some(refusal) = &state.call.refused {
        return InvocationError::Plugin(refusal.clone());
    }
    let trap = error.downcast_ref::<Trap>();
    let out_of_handles = crate::files::is_out_of_handles(&error).then_some(LimitKind::Handles);
    let hit = state
        .limiter
        .hit
        .or(state.call.hit)
        .or(out_of_handles)
        .or(match trap {
            Some(Trap::Interrupt) => Some(LimitKind::WallTime),
            _ => None,
        });
    match (hit, trap) {
        (Some(kind), _) => InvocationError::limit(kind, &state.call.limits),
        (None, Some(Trap::StackOverflow)) => InvocationError::Trap("stack overflow".into()),
        (None, Some(trap)) => InvocationError::Trap(trap.to_string()),
        (None, None) => InvocationError::Trap(format!("{error:#}")),
    }
}

/// Moves what the plugin printed into its log: stdout as INFO, stderr as ERROR.
fn forward_output(store: &mut Store<HostState>) {
    let state = store.data_mut();
    let Some(services) = state.call.services.clone() else {
        return;
    };
    for (captured, level) in [
        (&state.stdout, LogLevel::Info),
        (&state.stderr, LogLevel::Error),
    ] {
        let (lines, dropped) = captured.take_lines();
        for line in lines {
            let Ok(line) = state.call.count_log_line(&line) else {
                return;
            };
            services.log(level, &line);
        }
        if dropped > 0 {
            services.log(
                LogLevel::Warn,
                &format!(
                    "{dropped} bytes of output dropped beyond the limit of {} bytes",
                    state.call.limits.output_bytes
                ),
            );
        }
    }
}

/// Runs `future` for at most `limit`; a plugin blocked in a host call (a sleep) is
/// stopped here, one running WebAssembly by the epoch callback.
pub(crate) async fn within<F: std::future::Future>(
    limit: Duration,
    future: F,
) -> Option<F::Output> {
    tokio::time::timeout(limit, future).await.ok()
}
