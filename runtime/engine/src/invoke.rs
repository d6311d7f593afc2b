//! One invocation of a trigger's plugin on the real database: the plugin runs in the
//! executor with a [`TriggerHost`], and its batched writes are written afterwards, only
//! if it succeeded.

use crate::cache::CacheStore;
use crate::host::{Database, TriggerHost};
use sluice_catalog::Trigger;
use sluice_plugin_api::{
    HostServices, Invocation, InvocationError, Limits, PluginCall, PluginExecutor, PluginRef,
    TriggerArguments,
};
use std::path::PathBuf;
use std::sync::Arc;

/// What every invocation needs: the executor, the database, the caches, the plugins.
pub struct Invoker {
    executor: Arc<dyn PluginExecutor>,
    storage: Arc<dyn Database>,
    cache: Arc<CacheStore>,
    plugin_dir: PathBuf,
    limits: Limits,
}

impl Invoker {
    /// Runs plugins from `plugin_dir` with `executor` within `limits`, on `storage`.
    pub fn new(
        executor: Arc<dyn PluginExecutor>,
        storage: Arc<dyn Database>,
        cache: Arc<CacheStore>,
        plugin_dir: PathBuf,
        limits: Limits,
    ) -> Self {
        Self {
            executor,
            storage,
            cache,
            plugin_dir,
            limits,
        }
    }

    /// The database plugins reach.
    pub fn storage(&self) -> &Arc<dyn Database> {
        &self.storage
    }

    /// The caches of every trigger.
    pub fn cache(&self) -> &Arc<CacheStore> {
        &self.cache
    }

    /// Runs `call` for `trigger` of `database`; batched writes are durable when this
    /// returns.
    ///
    /// # Errors
    ///
    /// The plugin's failure (its exception, a limit, a missing file) or the failure of
    /// its batched writes, as a message.
    pub async fn invoke(
        &self,
        database: &str,
        trigger: &Trigger,
        call: PluginCall,
    ) -> Result<Invocation, String> {
        let plugin = PluginRef {
            plugin_dir: self.plugin_dir.clone(),
            name: trigger.plugin_filename.clone(),
        };
        let host = Arc::new(TriggerHost::new(
            database,
            &trigger.trigger_name,
            Arc::clone(&self.storage),
            Arc::clone(&self.cache),
        ));
        let outcome = self
            .executor
            .run(
                &plugin,
                call,
                &self.limits,
                Arc::clone(&host) as Arc<dyn HostServices>,
            )
            .await;
        let write_errors = host.apply_writes().await;
        let invocation = outcome.map_err(|error| match error {
            InvocationError::Plugin(message) => message,
            other => other.to_string(),
        })?;
        match write_errors.into_iter().next() {
            Some(error) => Err(format!("the plugin's writes failed: {error}")),
            None => Ok(invocation),
        }
    }
}

/// A trigger's arguments as a call takes them.
pub fn arguments(trigger: &Trigger) -> TriggerArguments {
    trigger
        .trigger_arguments
        .as_ref()
        .map(|map| map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}
