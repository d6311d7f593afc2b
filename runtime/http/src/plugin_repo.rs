//! `gh:` plugins: single-file plugins fetched from the plugin repository
//! (`--plugin-repo`), by URL `repository + path` as upstream.
//!
//! Unlike upstream, which fetches the file again at every trigger start, the code is
//! fetched when the trigger is created (and at every plugin test) and kept in the plugin
//! directory: a trigger then starts at boot without the repository, and its code changes
//! only when it is created again.

use crate::error::ApiError;
use sluice_engine::plugin_dir::{PluginDir, repository_copy};
use std::sync::Arc;
use std::time::Duration;

/// The repository upstream uses when `--plugin-repo` is not given.
pub const DEFAULT_PLUGIN_REPO: &str =
    "https://raw.githubusercontent.com/influxdata/influxdb3_plugins/main/";

/// The largest plugin file accepted from the repository.
const MAX_PLUGIN_BYTES: usize = 10 << 20;

/// Where `gh:` plugins come from.
#[derive(Debug, Clone)]
pub struct PluginRepo {
    base: String,
    http: reqwest::Client,
}

impl PluginRepo {
    /// The repository at `base` (a URL).
    ///
    /// # Errors
    ///
    /// The HTTP client cannot be built.
    pub fn new(base: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot create the plugin repository client: {e}"))?;
        Ok(Self {
            base: base.to_string(),
            http,
        })
    }

    /// The URL of `path` in the repository, joined as upstream does.
    pub fn url(&self, path: &str) -> String {
        if self.base.ends_with('/') {
            format!("{}{path}", self.base)
        } else {
            format!("{}/{path}", self.base)
        }
    }

    /// Fetches the plugin `gh:<path>` and keeps it in `dir`, where its triggers run it
    /// from.
    ///
    /// # Errors
    ///
    /// 404 when the repository does not have it, 502 when the repository cannot be
    /// reached or answers with another error, 400 for a path that could leave the plugin
    /// directory.
    pub async fn fetch_into(&self, path: &str, dir: &Arc<PluginDir>) -> Result<(), ApiError> {
        let url = self.url(path);
        let local = repository_copy(path);
        if sluice_plugin_api::inside_plugin_dir(&local).is_none() {
            return Err(ApiError::BadRequest(format!(
                "Plugin error: Path traversal detected: plugin filename 'gh:{path}' attempts to \
                 access files outside the plugin directory"
            )));
        }
        let unreachable = |e: reqwest::Error| {
            ApiError::BadGateway(format!(
                "Plugin error: error fetching plugin from repository: {url}: {e}"
            ))
        };
        let response = self.http.get(&url).send().await.map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let message =
                format!("Plugin error: error fetching plugin from repository: {status} {url}");
            return Err(if status == reqwest::StatusCode::NOT_FOUND {
                ApiError::NotFound(message)
            } else {
                ApiError::BadGateway(message)
            });
        }
        let code = response.bytes().await.map_err(unreachable)?;
        if code.len() > MAX_PLUGIN_BYTES {
            return Err(ApiError::BadGateway(format!(
                "Plugin error: the plugin at {url} is over {MAX_PLUGIN_BYTES} bytes"
            )));
        }
        std::str::from_utf8(&code).map_err(|_| {
            ApiError::BadGateway(format!(
                "Plugin error: the plugin at {url} is not UTF-8 text"
            ))
        })?;
        let dir = Arc::clone(dir);
        tokio::task::spawn_blocking(move || dir.write_file(&local, &code))
            .await
            .map_err(|e| ApiError::Internal(format!("plugin file task failed: {e}")))?
            .map_err(|e| ApiError::Internal(e.to_string()))
    }
}
