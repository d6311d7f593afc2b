//! Warm instances of one plugin for one trigger ([`WarmPool`]).
//!
//! A fresh instance costs milliseconds (instantiating the Python runtime and loading the
//! plugin); a call on a loaded instance costs microseconds. A pool keeps a few loaded
//! instances of its plugin idle, for its trigger alone, in the sandbox's set of idle
//! instances ([`Slots`](crate::slots::Slots)), which drops the least recently used when
//! another call needs the room, when they pass the memory budget, and when they have
//! been idle too long. An instance that trapped or hit a limit is dropped; when the
//! plugin changes (the modification time of its file, or of the newest `.py` file of its
//! package), every idle instance is dropped and the next call loads the new code.

use crate::executor::Sandbox;
use crate::instance::PluginInstance;
use crate::slots::PoolId;
use sluice_plugin_api::{
    BoxFuture, CallUsage, HostServices, Invocation, InvocationError, Limits, PluginCall, PluginRef,
    WarmPool,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The pool of one trigger.
pub struct InstancePool {
    sandbox: Arc<Sandbox>,
    plugin: PluginRef,
    /// Its idle instances' key in the sandbox's set.
    id: PoolId,
}

impl InstancePool {
    /// An empty pool of `plugin`.
    pub fn new(sandbox: Arc<Sandbox>, plugin: PluginRef) -> Self {
        let id = sandbox.slots().new_pool();
        Self {
            sandbox,
            plugin,
            id,
        }
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

    /// Keeps `instance` for the next call, unless it is poisoned or swollen
    /// ([`PluginInstance::is_swollen`]): each call should start with about the budget of
    /// a fresh instance.
    fn give_back(&self, instance: PluginInstance, modified: Option<SystemTime>, limits: &Limits) {
        if !instance.is_poisoned() && !instance.is_swollen(limits) {
            self.sandbox.slots().park(self.id, instance, modified);
        }
    }
}

impl Drop for InstancePool {
    fn drop(&mut self) {
        self.sandbox.slots().forget(self.id);
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
            let mut instance = match self.sandbox.slots().take(self.id, modified) {
                Some(instance) => instance,
                None => match self
                    .sandbox
                    .instantiate_for(&self.plugin, limits, &services)
                    .await
                {
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
