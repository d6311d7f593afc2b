//! The process-wide sandbox, and running calls on fresh instances.

use crate::code_cache::{CodeCache, CodeCacheStats};
use crate::config::SandboxConfig;
use crate::epoch::EpochTicker;
use crate::files::ServerFiles;
use crate::host::HostState;
use crate::instance::PluginInstance;
use crate::memory_pages::{ImagePages, TouchedPages};
use crate::pool::InstancePool;
use crate::python::PythonRuntime;
use crate::scratch::ScratchRoot;
use crate::slots::{SlotBounds, Slots};
use crate::wit::{Python, PythonPre};
use crate::{Error, Result};
use sluice_plugin_api::{
    BoxFuture, CallUsage, HostServices, InstanceStats, Invocation, InvocationError, Limits,
    PluginCall, PluginExecutor, PluginRef, WarmPool,
};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::Engine;
use wasmtime::component::{ComponentExportIndex, HasSelf, Linker};

/// How long spares stay short of their count, at most, after a slot frees (an idle
/// instance expiring, say) while none was taken.
const SPARE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// How long after a spare was taken the next is made.
const SPARE_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// One per process: the engine, the compiled Python runtime, the epoch thread.
pub struct Sandbox {
    engine: Engine,
    pre: PythonPre<HostState>,
    runtime: PythonRuntime,
    max_memory_bytes: u64,
    /// The files every instance holds open, counted against the server's bound.
    files: Arc<ServerFiles>,
    /// The directory of every instance's `/tmp`, and what running calls wrote there.
    scratch: Arc<ScratchRoot>,
    /// Every live instance's slot, and the idle ones.
    slots: Arc<Slots>,
    /// The runtime's `memory-span` export.
    memory_span: ComponentExportIndex,
    /// Makes each instance's memory pages ready before the runtime runs in it.
    image_pages: ImagePages,
    /// File plugins' compiled code, for fresh instances to load without compiling.
    code_cache: CodeCache,
    _ticker: EpochTicker,
}

impl Sandbox {
    /// Builds the engine and prepares the Python runtime: loaded from the artifact cache
    /// when it is there, compiled (several seconds) and cached when it is not.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when wasmtime refuses the configuration (too many instances for
    /// the address space, say), [`Error::Runtime`] when the runtime cannot be compiled or
    /// linked.
    pub fn new(config: SandboxConfig) -> Result<Self> {
        if !(1..=SandboxConfig::MAX_INSTANCES).contains(&config.max_instances) {
            return Err(Error::Config(wasmtime::format_err!(
                "max instances must be from 1 to {}, not {}",
                SandboxConfig::MAX_INSTANCES,
                config.max_instances
            )));
        }
        let engine = config.engine().map_err(|e| {
            Error::Config(e.context(format!(
                "cannot reserve room for {} instances of up to {} MiB of memory each",
                config.max_instances,
                config.max_memory_bytes >> 20
            )))
        })?;
        let started = Instant::now();
        let runtime =
            PythonRuntime::prepare(&engine, config.cache_dir.as_deref()).map_err(Error::Runtime)?;
        tracing::debug!(elapsed = ?started.elapsed(), "python runtime ready");

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(Error::Runtime)?;
        crate::files::add_to_linker(&mut linker).map_err(Error::Runtime)?;
        crate::scratch::add_to_linker(&mut linker).map_err(Error::Runtime)?;
        Python::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(Error::Runtime)?;
        let instance_pre = linker
            .instantiate_pre(&runtime.component)
            .map_err(Error::Runtime)?;
        let pre = PythonPre::new(instance_pre).map_err(Error::Runtime)?;
        let memory_span = runtime
            .component
            .get_export_index(None, "memory-span")
            .ok_or_else(|| {
                Error::Runtime(wasmtime::format_err!("the runtime has no memory-span"))
            })?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)
            .map_err(|e| Error::Config(e.into()))?;
        let tmp_budget = config
            .max_tmp_bytes
            .unwrap_or_else(|| SandboxConfig::default_tmp_budget(&config.tmp_dir));
        let scratch = ScratchRoot::new(&config.tmp_dir, tmp_budget).map(Arc::new);
        let scratch = scratch.map_err(|e| {
            Error::Config(wasmtime::format_err!(
                "cannot make the plugins' /tmp in {}: {e}",
                config.tmp_dir.display()
            ))
        })?;
        if let Some(free) = crate::config::free_bytes(&config.tmp_dir)
            && free < tmp_budget
        {
            tracing::warn!(
                "the plugins' /tmp budget ({tmp_budget} bytes) is more than {} has free \
                 ({free} bytes): calls may find it full sooner, with ENOSPC",
                config.tmp_dir.display()
            );
        }
        let slots = Slots::new(SlotBounds {
            instances: config.max_instances,
            idle_memory_bytes: config.idle_memory_bytes,
            idle_time: config.idle_time,
            wait: config.instance_wait,
        });
        crate::slots::start_expiry(&slots).map_err(|e| Error::Config(e.into()))?;
        Ok(Self {
            engine,
            pre,
            runtime,
            max_memory_bytes: config.max_memory_bytes,
            files: ServerFiles::new(config.max_open_files),
            scratch,
            slots,
            memory_span,
            image_pages: ImagePages::new(config.image_fault_around, config.map_ahead),
            code_cache: CodeCache::new(),
            _ticker: ticker,
        })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn pre(&self) -> &PythonPre<HostState> {
        &self.pre
    }

    /// The host directory of the runtime's library, which every instance sees read-only.
    pub(crate) fn library(&self) -> &Arc<std::path::Path> {
        self.runtime.library()
    }

    pub(crate) fn files(&self) -> &Arc<ServerFiles> {
        &self.files
    }

    pub(crate) fn scratch(&self) -> &Arc<ScratchRoot> {
        &self.scratch
    }

    pub(crate) fn slots(&self) -> &Arc<Slots> {
        &self.slots
    }

    pub(crate) fn memory_span(&self) -> &ComponentExportIndex {
        &self.memory_span
    }

    pub(crate) fn image_pages(&self) -> &ImagePages {
        &self.image_pages
    }

    /// Learns, once, which pages of its memory an instance touches, so that each later
    /// instance has them mapped ahead (`memory_pages.rs`). The first instance made does
    /// it, or a server ahead of its first call; an instance made meanwhile goes without.
    /// It takes two spares of the sandbox's own made in free slots (none free: a later
    /// instance tries again); the first compiles the warm-up plugin, into the cache of
    /// compiled code, and the second, loading it from there as most instances load their
    /// plugin, is the one read. If either fails, instances go without for good.
    pub async fn learn_touched_pages(&self) {
        self.image_pages
            .learn(|| async {
                // A spare in a free slot, if one is free.
                let warm_up = async || {
                    let slot = self.slots.slot_for_spare()?;
                    Some(PluginInstance::spare(self, slot, None).await)
                };
                // The first is dropped before the second is made: its slot is free again.
                let second = match warm_up().await? {
                    Ok(first) => {
                        drop(first);
                        warm_up().await?
                    }
                    Err(error) => Err(error),
                };
                let touched = match second.map(|second| second.touched_pages()) {
                    Ok(Ok(touched)) => touched,
                    Ok(Err(error)) => {
                        tracing::info!(
                            %error,
                            "cannot read the page map: instances take a fault per page \
                             they first touch"
                        );
                        TouchedPages::default()
                    }
                    Err(error) => {
                        tracing::warn!(
                            %error,
                            "cannot learn the pages a call touches: instances take a fault \
                             per page they first touch"
                        );
                        TouchedPages::default()
                    }
                };
                let (written, read) = touched.counts();
                tracing::debug!(written, read, "pages a call touches, mapped ahead");
                Some(touched)
            })
            .await;
    }

    /// How many pages each instance has mapped ahead, written and only read; `None`
    /// until the sandbox learnt them.
    pub fn pages_mapped_ahead(&self) -> Option<(usize, usize)> {
        self.image_pages.touched().map(TouchedPages::counts)
    }

    pub(crate) fn code_cache(&self) -> &CodeCache {
        &self.code_cache
    }

    /// How the cache of file plugins' compiled code fares.
    pub fn code_cache_stats(&self) -> CodeCacheStats {
        self.code_cache.stats()
    }

    /// Instantiates `plugin` and loads its code, within `limits`. The instance can then
    /// serve many calls (see [`PluginInstance`]).
    ///
    /// # Errors
    ///
    /// The plugin file is unusable, its code fails to load (a syntax error, an exception
    /// at import), or loading hits a limit.
    pub async fn instantiate(
        &self,
        plugin: &PluginRef,
        limits: &Limits,
    ) -> Result<PluginInstance, InvocationError> {
        PluginInstance::new(self, plugin.read()?, plugin, limits, None).await
    }

    /// Instantiates `plugin` for a call served by `services`, which sees the loading's
    /// pauses and waits as the call's own: into a spare instance when one is ready.
    pub(crate) async fn instantiate_for(
        &self,
        plugin: &PluginRef,
        limits: &Limits,
        services: &Arc<dyn HostServices>,
    ) -> Result<PluginInstance, InvocationError> {
        let source = plugin.read()?;
        let services = Some(Arc::clone(services));
        if let Some(mut spare) = self.slots.take_spare(limits) {
            spare.adopt(self, source, plugin, limits, services).await?;
            return Ok(spare);
        }
        PluginInstance::new(self, source, plugin, limits, services).await
    }

    /// Makes spare instances until `count` are ready, or no slot is free, each in a turn
    /// of `services` ([`PluginExecutor::keep_spares`]).
    pub async fn make_spares(&self, count: usize, services: &Arc<dyn HostServices>) {
        self.learn_touched_pages().await;
        while self.slots.spare_count() < count {
            // The turn first: a slot held while waiting for one would be lost to calls.
            if let Some(turn) = services.pause() {
                turn.await;
            }
            let Some(slot) = self.slots.slot_for_spare() else {
                services.finish(false, CallUsage::default());
                return;
            };
            let made = PluginInstance::spare(self, slot, Some(Arc::clone(services))).await;
            services.finish(made.is_ok(), CallUsage::default());
            match made {
                Ok(spare) => self.slots.park_spare(spare),
                Err(error) => {
                    tracing::warn!(%error, "cannot make a spare plugin instance");
                    return;
                }
            }
        }
    }
}

impl PluginExecutor for Sandbox {
    fn max_memory_bytes(&self) -> u64 {
        self.max_memory_bytes
    }

    /// A fresh instance for every call: nothing survives from one call to the next.
    fn run<'a>(
        &'a self,
        plugin: &'a PluginRef,
        call: PluginCall,
        limits: &'a Limits,
        services: Arc<dyn HostServices>,
    ) -> BoxFuture<'a, Result<Invocation, InvocationError>> {
        Box::pin(async move {
            let started = Instant::now();
            let mut instance = match self.instantiate_for(plugin, limits, &services).await {
                Ok(instance) => instance,
                Err(e) => {
                    services.finish(false, CallUsage::default());
                    return Err(e);
                }
            };
            let mut invocation = instance.call(call, limits, services).await?;
            invocation.duration = started.elapsed();
            Ok(invocation)
        })
    }

    fn keep_spares(self: Arc<Self>, count: usize, services: Arc<dyn HostServices>) {
        if count == 0 {
            return;
        }
        let sandbox = Arc::downgrade(&self);
        let slots = Arc::clone(&self.slots);
        drop(self);
        tokio::spawn(async move {
            loop {
                let Some(sandbox) = sandbox.upgrade() else {
                    return;
                };
                sandbox.make_spares(count, &services).await;
                drop(sandbox);
                // Slots free up without a word: looked at again now and then.
                tokio::select! {
                    () = slots.spare_was_taken() => {
                        // Not while the call that took it loads and runs: instantiating
                        // maps and faults pages of the same process, and the two slowed
                        // each other.
                        tokio::time::sleep(SPARE_DELAY).await;
                    }
                    () = tokio::time::sleep(SPARE_RETRY) => {}
                }
            }
        });
    }

    fn warm_pool(self: Arc<Self>, plugin: PluginRef) -> Option<Arc<dyn WarmPool>> {
        Some(Arc::new(InstancePool::new(self, plugin)))
    }

    fn instance_stats(&self) -> Option<InstanceStats> {
        let code = self.code_cache.stats();
        Some(InstanceStats {
            compiled_code_bytes: code.bytes as u64,
            compiled_code_hits: code.hits,
            compiled_code_misses: code.misses,
            ..self.slots.stats()
        })
    }
}
