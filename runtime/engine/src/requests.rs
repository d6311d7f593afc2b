//! Request triggers: `/api/v3/engine/<path>` runs the plugin of the enabled trigger that
//! serves `<path>`, on the real database, and answers with what it returned.
//!
//! The trigger is looked up in the catalog at each request, so creating, enabling,
//! disabling or deleting a trigger takes effect at once, with nothing to keep in step.
//! As upstream, a trigger without `run_async` serves one request at a time, first come
//! first served; with it, requests run at once, each on its own instance.

use crate::invoke::{Admission, CallError, Invoker, TooManyInvocations, arguments};
use sluice_catalog::{Catalog, TriggerId};
use sluice_plugin_api::{HttpRequest, HttpResponse, PluginCall};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The turn of each synchronous request trigger.
type Turns = HashMap<TriggerId, Arc<tokio::sync::Mutex<()>>>;

/// Who may call a request trigger: tokens that may call its database's triggers, or
/// anyone when it is public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callers {
    /// The trigger's database.
    pub database: String,
    /// Created public: no token needed.
    pub public: bool,
}

/// Runs the plugins of request triggers.
pub struct RequestTriggers {
    catalog: Arc<Catalog>,
    invoker: Arc<Invoker>,
    turns: Mutex<Turns>,
}

/// Why a request trigger did not answer with the plugin's response.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No enabled trigger serves the path.
    #[error("not found")]
    NotFound,
    /// The caller may not call the triggers of the database whose trigger serves the
    /// path.
    #[error("the caller may not call the request triggers of database {0}")]
    Forbidden(String),
    /// The plugin failed, or its batched writes could not be written.
    #[error("{0}")]
    Plugin(String),
    /// Its database runs as many invocations as its quota allows.
    #[error(transparent)]
    TooMany(#[from] TooManyInvocations),
    /// No instance could be had in time: every one the server may hold was running a
    /// call. The plugin never ran; the caller may try again.
    #[error("{0}")]
    Busy(String),
}

impl RequestTriggers {
    /// The request triggers of `catalog`, run by `invoker`.
    pub fn new(catalog: Arc<Catalog>, invoker: Arc<Invoker>) -> Self {
        Self {
            catalog,
            invoker,
            turns: Mutex::default(),
        }
    }

    /// The lock a synchronous trigger's requests queue on (tokio's is fair: first in,
    /// first out). Locks nobody holds or waits for are dropped on the way.
    fn turn(&self, trigger: TriggerId) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        turns.retain(|_, turn| Arc::strong_count(turn) > 1);
        Arc::clone(turns.entry(trigger).or_default())
    }

    /// Who may call the enabled trigger serving `path`, if one does.
    pub fn callers_of(&self, path: &str) -> Option<Callers> {
        self.catalog
            .request_trigger(path)
            .map(|(database, trigger)| Callers {
                database: database.name,
                public: trigger.public,
            })
    }

    /// Runs the trigger serving `request.path`, if `may_call` allows its callers. Batched writes are written, and durable, before the response
    /// is returned, as upstream.
    ///
    /// # Errors
    ///
    /// [`RequestError::NotFound`] when no enabled trigger serves the path;
    /// [`RequestError::Forbidden`] when `may_call` refuses;
    /// [`RequestError::Plugin`] when the plugin fails.
    pub async fn handle(
        &self,
        request: HttpRequest,
        may_call: impl FnOnce(&Callers) -> bool,
    ) -> Result<HttpResponse, RequestError> {
        let (database, trigger) = self
            .catalog
            .request_trigger(&request.path)
            .ok_or(RequestError::NotFound)?;
        let callers = Callers {
            database: database.name.clone(),
            public: trigger.public,
        };
        if !may_call(&callers) {
            return Err(RequestError::Forbidden(database.name));
        }
        let call = PluginCall::Request {
            request,
            args: arguments(&trigger),
        };
        let turn = (!trigger.trigger_settings.run_async).then(|| self.turn(trigger.id));
        let _turn = match &turn {
            Some(turn) => Some(turn.lock().await),
            None => None,
        };
        let admitted = self
            .invoker
            .admit(&database, Some(&trigger), Admission::Refuse)
            .await;
        let _admitted = match admitted {
            Ok(turns) => turns,
            Err(refused) => {
                self.invoker
                    .log_error(&database, &trigger.trigger_name, refused.to_string());
                return Err(refused.into());
            }
        };
        match self.invoker.invoke(&database, &trigger, call).await {
            Ok(invocation) => invocation
                .response
                .ok_or_else(|| RequestError::Plugin("the plugin returned no response".into())),
            Err(error) => {
                let (text, refused) = match error {
                    CallError::Busy(why) => (
                        format!("request plugin not run: {why}"),
                        RequestError::Busy(why),
                    ),
                    CallError::Failed(message) => (
                        format!("error running request plugin: {message}"),
                        RequestError::Plugin(message),
                    ),
                };
                tracing::error!(database = %database.name, trigger = %trigger.trigger_name, "{text}");
                self.invoker
                    .log_error(&database, &trigger.trigger_name, text);
                Err(refused)
            }
        }
    }
}
