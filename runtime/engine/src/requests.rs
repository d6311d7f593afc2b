//! Request triggers: `/api/v3/engine/<path>` runs the plugin of the enabled trigger that
//! serves `<path>`, on the real database, and answers with what it returned.
//!
//! The trigger is looked up in the catalog at each request, so creating, enabling,
//! disabling or deleting a trigger takes effect at once, with nothing to keep in step.
//! Each request runs on a fresh sandbox instance.

use crate::invoke::{Invoker, arguments};
use sluice_catalog::Catalog;
use sluice_plugin_api::{HttpRequest, HttpResponse, PluginCall};
use std::sync::Arc;

/// Runs the plugins of request triggers.
pub struct RequestTriggers {
    catalog: Arc<Catalog>,
    invoker: Arc<Invoker>,
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
    /// The request triggers of `catalog`, run by `invoker`.
    pub fn new(catalog: Arc<Catalog>, invoker: Arc<Invoker>) -> Self {
        Self { catalog, invoker }
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
            .request_trigger(&request.path)
            .ok_or(RequestError::NotFound)?;
        let call = PluginCall::Request {
            request,
            args: arguments(&trigger),
        };
        match self.invoker.invoke(&database, &trigger, call).await {
            Ok(invocation) => invocation
                .response
                .ok_or_else(|| RequestError::Plugin("the plugin returned no response".into())),
            Err(message) => {
                tracing::error!(database = %database, trigger = %trigger.trigger_name, "error running request plugin: {message}");
                Err(RequestError::Plugin(message))
            }
        }
    }
}
