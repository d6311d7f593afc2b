//! Warm instances of one plugin for one trigger ([`WarmPool`]).
//!
//! A fresh instance costs milliseconds (instantiating the Python runtime and loading the
//! plugin); a call on a loaded instance costs microseconds. A pool keeps a few loaded
//! instances of its plugin, for its trigger alone. An instance that trapped or hit a
//! limit is dropped; when the plugin changes (the modification time of its file, or of
//! the newest `.py` file of its package), every idle instance is dropped and the next
//! call loads the new code.

use crate::executor::Sandbox;
use crate::instance::PluginInstance;
use sluice_plugin_api::{
    BoxFuture, CallUsage, HostServices, Invocation, InvocationError, Limits, PluginCall, PluginRef,
    WarmPool,
};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

/// Idle instances kept per pool; more concurrent calls instantiate more, and the extra
/// ones are dropped when they finish.
const MAX_IDLE: usize = 4;

/// The pool of one trigger.
pub struct InstancePool {
    sandbox: Arc<Sandbox>,
    plugin: PluginRef,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    /// The plugin's modification time when these instances loaded it.
    loaded: Option<SystemTime>,
    instances: Vec<PluginInstance>,
}

impl InstancePool {
    /// An empty pool of `plugin`.
    pub fn new(sandbox: Arc<Sandbox>, plugin: PluginRef) -> Self {
        Self {
            sandbox,
            plugin,
            idle: Mutex::default(),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the plugin last changed: a file's modification time, or the newest of a
    /// package's `.py` files (outside `__pycache__`); `None` when it cannot be read
    /// (loading will say why).
    fn modified(&self) -> Option<SystemTime> {
        newest(
            &self
                .plugin
                .plugin_dir
                .join(self.plugin.name.trim_end_matches('/')),
            0,
        )
    }

    /// An idle instance of the current code, dropping stale ones.
    fn take(&self, modified: Option<SystemTime>) -> Option<PluginInstance> {
        let mut idle = self.idle();
        if idle.loaded != modified {
            idle.instances.clear();
            idle.loaded = modified;
        }
        idle.instances.pop()
    }

    /// Keeps `instance` for the next call, unless it is poisoned, stale or swollen
    /// ([`PluginInstance::is_swollen`]): each call should start with about the budget of
    /// a fresh instance.
    fn give_back(&self, instance: PluginInstance, modified: Option<SystemTime>, limits: &Limits) {
        let mut idle = self.idle();
        if !instance.is_poisoned()
            && !instance.is_swollen(limits)
            && idle.loaded == modified
            && idle.instances.len() < MAX_IDLE
        {
            idle.instances.push(instance);
        }
    }
}

impl WarmPool for InstancePool {
    fn run<'a>(
        &'a self,
        call: PluginCall,
        limits: &'a Limits,
        services: Arc<dyn HostServices>,
    ) -> BoxFuture<'a, Result<Invocation, InvocationError>> {
        Box::pin(async move {
            let started = Instant::now();
            let modified = self.modified();
            let mut instance = match self.take(modified) {
                Some(instance) => instance,
                None => match self.sandbox.instantiate(&self.plugin, limits).await {
                    Ok(instance) => instance,
                    Err(error) => {
                        services.finish(false, CallUsage::default());
                        return Err(error);
                    }
                },
            };
            let result = instance.call(call, limits, services).await;
            self.give_back(instance, modified, limits);
            result.map(|mut invocation| {
                invocation.duration = started.elapsed();
                invocation
            })
        })
    }
}

/// Package directories deeper than this are not looked into for changes.
const MAX_PACKAGE_DEPTH: usize = 8;

/// The modification time of `path`, or for a directory the newest of its `.py` files.
fn newest(path: &Path, depth: usize) -> Option<SystemTime> {
    let metadata = std::fs::metadata(path).ok()?;
    if !metadata.is_dir() {
        return metadata.modified().ok();
    }
    if depth > MAX_PACKAGE_DEPTH {
        return None;
    }
    std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                (name != "__pycache__")
                    .then(|| newest(&path, depth + 1))
                    .flatten()
            } else {
                path.extension()
                    .is_some_and(|e| e == "py")
                    .then(|| newest(&path, depth + 1))
                    .flatten()
            }
        })
        .max()
}
