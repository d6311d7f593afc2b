//! The HTTP API, one module per endpoint family: [`write`] (`/api/v3/write_lp`,
//! `/api/v2/write`, `/write`), [`query`] (`/api/v3/query_sql`), [`configure`]
//! (`/api/v3/configure/database`, `/api/v3/configure/table`), [`triggers`]
//! (`/api/v3/configure/processing_engine_trigger…`), [`plugins`] (`/api/v3/plugins/…`),
//! [`plugin_test`] (`/api/v3/plugin_test/…`),
//! [`engine`] (`/api/v3/engine/<path>`),
//! [`token`] (`/api/v3/configure/token…`) and [`health`] (`/health`, `/ping`, `/metrics`). [`auth`]
//! checks tokens before any handler runs; [`cors`] answers `OPTIONS` on any path. Errors
//! from every handler become responses in one place, [`error::ApiError`].

pub mod auth;
pub mod body;
pub mod configure;
pub mod cors;
pub mod engine;
pub mod error;
pub mod health;
pub mod listen;
pub mod packages;
mod pip;
pub mod plugin_repo;
pub mod plugin_test;
pub mod plugins;
pub mod query;
pub mod storage;
pub mod token;
pub mod triggers;
pub mod virtual_env;
pub mod write;

pub use auth::Authentication;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use sluice_query::QueryEngine;
use sluice_storage::WriteBuffer;
use std::sync::Arc;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The write path and buffer.
    pub storage: Arc<WriteBuffer>,
    /// SQL over the storage.
    pub query: QueryEngine,
    /// Largest request body accepted, after decompression.
    pub max_request_bytes: usize,
    /// The longest pause while a request's body arrives (408 beyond).
    pub body_timeout: std::time::Duration,
    /// The memory all requests' bodies share until they are answered, in KiB permits
    /// ([`body::read_within`]).
    pub body_memory: Arc<tokio::sync::Semaphore>,
    /// Whether requests need a token.
    pub authentication: Authentication,
    /// Where plugin files are (`--plugin-dir`, and each database's area); triggers cannot
    /// be created without it.
    pub plugin_dir: Option<Arc<sluice_engine::plugin_dir::PluginAreas>>,
    /// Where `gh:` plugins are fetched from (`--plugin-repo`); `None` refuses them.
    pub plugin_repo: Option<Arc<plugin_repo::PluginRepo>>,
    /// The kinds of trigger that may be created (`--restrict-plugin-triggers-to`); `None`
    /// allows all.
    pub allowed_triggers: Option<Vec<sluice_catalog::PluginType>>,
    /// Runs triggers; `None` without a plugin directory.
    pub engine: Option<Arc<sluice_engine::ProcessingEngine>>,
    /// How `install package` installs plugin packages (`--package-manager`).
    pub package_manager: pip::PackageManager,
    /// The pyo3 runtime's package environment; `None` unless the runtime is enabled.
    pub virtual_env: Option<virtual_env::VirtualEnv>,
}

impl AppState {
    /// Returns once a catalog change just made is in effect: the engine follows the
    /// catalog by itself, and a response waits until triggers have started or stopped to
    /// match, so that the client's next request meets the change.
    pub(crate) async fn catalog_change_in_effect(&self) {
        if let Some(engine) = &self.engine {
            engine.triggers.settled().await;
        }
    }
}

/// The router of the whole API.
pub fn router(state: AppState) -> Router {
    let limit = state.max_request_bytes;
    Router::new()
        .route("/api/v3/write_lp", post(write::write_v3))
        .route("/api/v2/write", post(write::write_v2))
        .route("/write", post(write::write_v1))
        .route(
            "/api/v3/query_sql",
            get(query::query_get).post(query::query_post),
        )
        .route(
            "/api/v3/configure/database",
            get(configure::list_databases)
                .post(configure::create_database)
                .put(configure::update_database)
                .delete(configure::delete_database),
        )
        .route("/api/v3/configure/table", post(configure::create_table))
        .route(
            "/api/v3/configure/storage/unreferenced",
            delete(storage::remove_unreferenced),
        )
        .route(
            "/api/v3/configure/token",
            get(token::list).post(token::create).delete(token::delete),
        )
        .route("/api/v3/configure/token/admin", post(token::create_admin))
        .route(
            "/api/v3/configure/processing_engine_trigger",
            post(triggers::create).delete(triggers::delete),
        )
        .route(
            "/api/v3/configure/processing_engine_trigger/enable",
            post(triggers::enable),
        )
        .route(
            "/api/v3/configure/processing_engine_trigger/disable",
            post(triggers::disable),
        )
        .route(
            "/api/v3/configure/token/admin/regenerate",
            post(token::regenerate_admin),
        )
        .route(
            "/api/v3/configure/plugin_environment/install_packages",
            post(packages::install_packages),
        )
        .route(
            "/api/v3/configure/plugin_environment/install_requirements",
            post(packages::install_requirements),
        )
        .route("/api/v3/plugin_test/wal", post(plugin_test::wal))
        .route("/api/v3/plugin_test/schedule", post(plugin_test::schedule))
        .route(
            "/api/v3/plugins/files",
            post(plugins::upload_file).put(plugins::update_file),
        )
        .route("/api/v3/plugins/directory", put(plugins::replace_directory))
        .route(
            "/api/v3/engine/{*path}",
            get(engine::handle).post(engine::handle),
        )
        .route("/health", get(health::health))
        .route("/api/v1/health", get(health::health))
        .route("/ping", get(health::ping).post(health::ping))
        .route("/metrics", get(health::metrics))
        .fallback(health::not_found)
        // The raw body may be compressed; `body::read` enforces the limit after decoding.
        .layer(DefaultBodyLimit::max(limit.saturating_add(1)))
        // Inside authentication: only an authenticated client's body is read.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            body::read_within,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(cors::preflight))
        .layer(axum::middleware::from_fn(error::json_error_bodies))
        .with_state(state)
}
