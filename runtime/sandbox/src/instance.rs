//! One instantiated plugin, and the budget of each call on it.

use crate::encode::batch_to_wit;
use crate::executor::Sandbox;
use crate::files::OpenFiles;
use crate::host::{CallState, HostState, cut_line};
use crate::output::CapturedOutput;
use crate::slots::Slot;
use crate::store_limits::MemoryLimiter;
use crate::wit::{PythonRuntime, loader, types};
use sluice_plugin_api::{
    CallUsage, DATABASE_PACKAGES_DIR, HostServices, HttpResponse, Invocation, InvocationError,
    LimitKind, Limits, LogLevel, PACKAGES_DIR, PluginCall, PluginRef, PluginSource,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Where the plugin's own files and the installed packages appear inside the sandbox.
pub const GUEST_PLUGIN_DIR: &str = "/plugins";

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
    bindings: PythonRuntime,
    poisoned: bool,
    /// Its linear memory once the plugin was loaded.
    fresh_bytes: u64,
    /// Its place in the sandbox's budget of live instances, given back when it drops
    /// (after the store: declared last).
    _slot: Slot,
}

/// What a call returned before its budget is settled.
type Raw<T> = wasmtime::Result<Result<T, types::PluginError>>;

impl PluginInstance {
    /// Instantiates the Python runtime for `plugin` and loads the plugin's code, within
    /// `limits`, for a call served by `services` if given.
    pub(crate) async fn new(
        sandbox: &Sandbox,
        plugin: &PluginRef,
        limits: &Limits,
        services: Option<Arc<dyn HostServices>>,
    ) -> Result<Self, InvocationError> {
        let source = plugin.read()?;
        let slot = sandbox.slots().acquire().await?;
        let stdout = CapturedOutput::default();
        let stderr = CapturedOutput::default();
        let mut wasi = WasiCtxBuilder::new();
        wasi.env("PLUGIN_DIR", GUEST_PLUGIN_DIR)
            .env("TZ", "UTC")
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .max_random_size(MAX_RANDOM_BYTES);
        for (host, guest) in mounts(plugin, &source) {
            wasi.preopened_dir(&host, &guest, FsPerms::ReadOnly)
                .map_err(|e| {
                    InvocationError::PluginFile(format!(
                        "cannot mount {guest} for the plugin: {e:#}"
                    ))
                })?;
        }
        let mut table = ResourceTable::new();
        table.set_max_capacity(crate::files::handles(limits));
        let state = HostState {
            wasi: wasi.build(),
            table,
            files: OpenFiles::new(Arc::clone(sandbox.files())),
            limiter: MemoryLimiter::new(limits.memory_bytes),
            stdout,
            stderr,
            call: CallState::new(limits.clone()),
        };
        let mut store = Store::new(sandbox.engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|mut context| {
            let call = &mut context.data_mut().call;
            if Instant::now() >= call.deadline {
                call.hit = Some(LimitKind::WallTime);
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(match call.services.as_ref().and_then(|host| host.pause()) {
                Some(pause) => UpdateDeadline::YieldCustom(1, pause),
                None => UpdateDeadline::Yield(1),
            })
        });
        begin(&mut store, limits, services);
        let bindings = match within(
            limits.wall_time,
            sandbox.pre().instantiate_async(&mut store),
        )
        .await
        {
            Some(Ok(bindings)) => bindings,
            Some(Err(e)) => return Err(classify(&store, e)),
            None => return Err(InvocationError::limit(LimitKind::WallTime, limits)),
        };
        let wit_source = match source {
            PluginSource::File { name, code } => loader::PluginSource::File((name, code)),
            PluginSource::Package(name) => loader::PluginSource::Package(name),
        };
        let mut instance = Self {
            store,
            bindings,
            poisoned: false,
            fresh_bytes: 0,
            _slot: slot,
        };
        let loader = instance.bindings.sluice_plugin_loader();
        let raw = within(
            limits.wall_time,
            loader.call_load(&mut instance.store, &wit_source),
        )
        .await;
        instance.settle(raw)?;
        instance.fresh_bytes = instance.store.data().limiter.total_bytes;
        Ok(instance)
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
        // Files kept open between calls count too: descriptors are the server's.
        if self.store.data().files.any() {
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
        let entry = self.bindings.sluice_plugin_entry_points();
        let wall = limits.wall_time;
        let result = match call {
            PluginCall::Writes { batches, args } => {
                let batches: Vec<types::TableBatch> = batches.iter().map(batch_to_wit).collect();
                let call = entry.call_process_writes(&mut self.store, &batches, &args);
                let raw = within(wall, call).await;
                self.settle(raw).map(|()| None)
            }
            PluginCall::Schedule { call_time_ns, args } => {
                let call = entry.call_process_scheduled_call(&mut self.store, call_time_ns, &args);
                let raw = within(wall, call).await;
                self.settle(raw).map(|()| None)
            }
            PluginCall::Request { request, args } => {
                let request = types::HttpRequest {
                    method: request.method,
                    path: request.path,
                    query: request.query,
                    headers: request.headers,
                    body: request.body,
                };
                let call = entry.call_process_request(&mut self.store, &request, &args);
                let raw = within(wall, call).await;
                self.settle(raw).and_then(|response| {
                    if response.body.len() as u64 > limits.response_bytes {
                        return Err(InvocationError::limit(LimitKind::ResponseBytes, limits));
                    }
                    Ok(Some(HttpResponse {
                        status: response.status,
                        headers: response.headers,
                        body: response.body,
                    }))
                })
            }
        };
        let state = self.store.data();
        let usage = CallUsage {
            fuel_used: limits
                .fuel
                .saturating_sub(self.store.get_fuel().unwrap_or(0)),
            peak_memory_bytes: state.limiter.peak_bytes,
            bytes_written: state.call.bytes_written,
        };
        services.finish(result.is_ok(), usage);
        Ok(Invocation {
            response: result?,
            duration: started.elapsed(),
            fuel_used: usage.fuel_used,
            peak_memory_bytes: usage.peak_memory_bytes,
            bytes_written: usage.bytes_written,
        })
    }

    /// Forwards captured output to the log and turns the outcome of a call (`None` when
    /// it ran out of wall time) into its result; poisons the instance after a trap.
    fn settle<T>(&mut self, raw: Option<Raw<T>>) -> Result<T, InvocationError> {
        forward_output(&mut self.store);
        let error = match raw {
            Some(Ok(Ok(value))) => return Ok(value),
            Some(Ok(Err(plugin_error))) => {
                // Kept in the invocation records and logs: as long as a log line at most.
                return Err(InvocationError::Plugin(cut_line(&plugin_error.message)));
            }
            Some(Err(trap)) => classify(&self.store, trap),
            None => InvocationError::limit(LimitKind::WallTime, &self.store.data().call.limits),
        };
        self.poisoned = true;
        Err(error)
    }
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
    // Fuel is enabled on every engine the sandbox builds, so this cannot fail.
    let _ = store.set_fuel(limits.fuel);
    store.set_epoch_deadline(1);
    let state = store.data_mut();
    state.table.set_max_capacity(crate::files::handles(limits));
    state.files.begin_call();
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
            Some(Trap::OutOfFuel) => Some(LimitKind::Fuel),
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
