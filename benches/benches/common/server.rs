//! The servers the benches start in their own process: their triggers and their HTTP
//! side.

use sluice_catalog::{ErrorBehavior, Trigger, TriggerSettings, TriggerSpec};
use sluice_engine::ProcessingEngine;
use sluice_http::{AppState, Authentication, router};
use sluice_query::QueryEngine;
use sluice_storage::WriteBuffer;
use std::sync::Arc;
use std::time::Duration;

/// Serves `storage` and `engine` on a loopback port, without authentication, as
/// `sluice serve` would; returns the server's URL.
pub async fn serve(storage: &Arc<WriteBuffer>, engine: &Arc<ProcessingEngine>) -> String {
    let state = AppState {
        storage: Arc::clone(storage),
        query: QueryEngine::new(Arc::clone(storage)),
        max_request_bytes: 64 << 20,
        body_timeout: Duration::from_secs(30),
        body_memory: Arc::new(tokio::sync::Semaphore::new(1 << 20)),
        authentication: Authentication::Disabled,
        plugin_dir: None,
        plugin_repo: None,
        allowed_triggers: None,
        engine: Some(Arc::clone(engine)),
        package_manager: sluice_http::packages::PackageManager::Disabled,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    format!("http://{address}")
}

/// A trigger of `plugin` on `spec`, as the admin would create it.
pub fn trigger(name: &str, spec: &str, plugin: &str, run_async: bool) -> Trigger {
    Trigger {
        id: Default::default(),
        trigger_name: name.into(),
        plugin_filename: plugin.into(),
        plugin_area: Default::default(),
        trigger: TriggerSpec::parse(spec).expect("a valid spec"),
        trigger_settings: TriggerSettings {
            run_async,
            error_behavior: ErrorBehavior::Log,
            ..TriggerSettings::default()
        },
        trigger_arguments: None,
        disabled: false,
        granted_databases: Vec::new(),
        reach: Default::default(),
        public: false,
        limits: Default::default(),
    }
}
