//! `gh:` plugins: single-file plugins fetched from the plugin repository
//! (`--plugin-repo`), by URL `repository + path` as upstream.
//!
//! Unlike upstream, which fetches the file again at every trigger start, the code is
//! fetched when the trigger is created (and at every plugin test) and kept in the plugin
//! directory: a trigger then starts at boot without the repository, and its code changes
//! only when it is created again.
//!
//! Only files under the repository's URL are fetched: the path is decoded and made of
//! plain names first ([`repository_path`]), each name is encoded again into the URL, the
//! URL must still start with the repository's, and a redirect is followed only to
//! another URL under it.

use crate::error::ApiError;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sluice_engine::plugin_dir::{PluginDir, repository_copy, repository_path};
use std::sync::Arc;
use std::time::Duration;

/// What a name in the URL's path keeps as it is: RFC 3986's unreserved characters.
const PATH_NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;

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
        let prefix = Self::prefix_of(base);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if attempt.url().as_str().starts_with(&prefix) {
                    attempt.follow()
                } else {
                    attempt.error("the repository redirected outside itself")
                }
            }))
            .build()
            .map_err(|e| format!("cannot create the plugin repository client: {e}"))?;
        Ok(Self {
            base: base.to_string(),
            http,
        })
    }

    /// What every URL of the repository starts with: its URL, as parsed, ending in `/`.
    fn prefix_of(base: &str) -> String {
        let mut prefix =
            reqwest::Url::parse(base).map_or_else(|_| base.to_string(), |url| url.to_string());
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        prefix
    }

    /// The URL of `path` in the repository, joined as upstream does; `None` for a path
    /// [`repository_path`] refuses, or one whose URL would not be under the repository's.
    pub fn url(&self, path: &str) -> Option<reqwest::Url> {
        let path = repository_path(path)?;
        let encoded: Vec<String> = path
            .split('/')
            .map(|name| utf8_percent_encode(name, PATH_NAME).to_string())
            .collect();
        let joined = if self.base.ends_with('/') {
            format!("{}{}", self.base, encoded.join("/"))
        } else {
            format!("{}/{}", self.base, encoded.join("/"))
        };
        let url = reqwest::Url::parse(&joined).ok()?;
        url.as_str()
            .starts_with(&Self::prefix_of(&self.base))
            .then_some(url)
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
        let (Some(url), Some(local)) = (self.url(path), repository_copy(path)) else {
            return Err(ApiError::BadRequest(format!(
                "Plugin error: Path traversal detected: plugin filename 'gh:{path}' attempts to \
                 access files outside the plugin directory"
            )));
        };
        let unreachable = |e: reqwest::Error| {
            // The causes too: a refused redirect says why only in its source.
            let mut message = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(inner) = cause {
                message = format!("{message}: {inner}");
                cause = inner.source();
            }
            ApiError::BadGateway(format!(
                "Plugin error: error fetching plugin from repository: {url}: {message}"
            ))
        };
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(unreachable)?;
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
