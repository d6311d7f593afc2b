//! Request triggers: `/api/v3/engine/<path>` runs the plugin of the enabled trigger that
//! serves `<path>`, on the real database, and answers with what it returned.
//!
//! The trigger is looked up in the catalog at each request, so creating, enabling,
//! disabling or deleting a trigger takes effect at once, with nothing to keep in step.
//! Each request runs on a fresh sandbox instance.

use crate::cache::CacheStore;
use crate::host::{Database, TriggerHost};
use sluice_catalog::Catalog;
use sluice_plugin_api::{
    HostServices, HttpRequest, HttpResponse, InvocationError, Limits, PluginCall, PluginExecutor,
    PluginRef,
};
use std::path::PathBuf;
use std::sync::Arc;

/// Runs the plugins of request triggers.
pub struct RequestTriggers {
    catalog: Arc<Catalog>,
    executor: Arc<dyn PluginExecutor>,
    storage: Arc<dyn Database>,
    cache: Arc<CacheStore>,
    plugin_dir: PathBuf,
    limits: Limits,
}

/// Why a request trigger did not answer with the plugin's response.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No enabled trigger serves the path.
    #[error("not found")]
    NotFound,
    /// The plugin failed, or its batched writes could not be written.
    #[error("{0}")]
    Plugin(String),
}

impl RequestTriggers {
    /// Request triggers of `catalog`, with plugins from `plugin_dir` run by `executor`
    /// within `limits`.
    pub fn new(
        catalog: Arc<Catalog>,
        executor: Arc<dyn PluginExecutor>,
        storage: Arc<dyn Database>,
        cache: Arc<CacheStore>,
        plugin_dir: PathBuf,
        limits: Limits,
    ) -> Self {
        Self {
            catalog,
            executor,
            storage,
            cache,
            plugin_dir,
            limits,
        }
    }

    /// Runs the trigger serving `request.path`. Batched writes are written, and durable,
    /// before the response is returned, as upstream.
    ///
    /// # Errors
    ///
    /// [`RequestError::NotFound`] when no enabled trigger serves the path;
    /// [`RequestError::Plugin`] when the plugin fails.
    pub async fn handle(&self, request: HttpRequest) -> Result<HttpResponse, RequestError> {
        let (database, trigger) = self
            .catalog
            .database_names()
            .into_iter()
            .find_map(|database| {
                let triggers = self.catalog.triggers(&database)?;
                let trigger = triggers.into_iter().find(|t| {
                    !t.disabled && t.trigger.request_path() == Some(request.path.as_str())
                })?;
                Some((database, trigger))
            })
            .ok_or(RequestError::NotFound)?;
        let plugin = PluginRef {
            plugin_dir: self.plugin_dir.clone(),
            name: trigger.plugin_filename.clone(),
        };
        let host = Arc::new(TriggerHost::new(
            &database,
            &trigger.trigger_name,
            Arc::clone(&self.storage),
            Arc::clone(&self.cache),
        ));
        let args = trigger
            .trigger_arguments
            .map(|map| map.into_iter().collect());
        let call = PluginCall::Request { request, args };
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
        match outcome {
            Ok(invocation) => {
                if let Some(error) = write_errors.into_iter().next() {
                    return Err(RequestError::Plugin(format!(
                        "the plugin's writes failed: {error}"
                    )));
                }
                invocation
                    .response
                    .ok_or_else(|| RequestError::Plugin("the plugin returned no response".into()))
            }
            Err(error) => {
                let message = match &error {
                    InvocationError::Plugin(m) => m.clone(),
                    other => other.to_string(),
                };
                tracing::error!(database = %database, trigger = %trigger.trigger_name, "error running request plugin: {message}");
                Err(RequestError::Plugin(message))
            }
        }
    }
}
