//! The object store Parquet snapshots live in: a directory, memory, or an S3-compatible
//! bucket.

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::client::SpawnedReqwestConnector;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use std::path::PathBuf;
use std::sync::Arc;

/// How to reach an S3-compatible bucket.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Region; S3-compatible stores often accept any.
    pub region: String,
    /// Endpoint URL, for stores other than AWS (MinIO, Ceph, …); AWS when `None`.
    pub endpoint: Option<String>,
    /// Access key id; from the environment's credential chain when `None`.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Allow `http://` endpoints.
    pub allow_http: bool,
}

/// Where Parquet files are stored.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// Files under a local directory.
    File(PathBuf),
    /// Process memory: gone when the server stops (for tests and trials).
    Memory,
    /// An S3-compatible bucket.
    S3(S3Config),
}

impl StoreConfig {
    /// The directory of a `File` store, whose files the snapshots sync themselves
    /// (the local object store renames a staged file into place, without syncing).
    pub fn local_root(&self) -> Option<&std::path::Path> {
        match self {
            Self::File(dir) => Some(dir),
            Self::Memory | Self::S3(_) => None,
        }
    }

    /// Opens the store.
    ///
    /// # Errors
    ///
    /// The directory cannot be created, or the S3 configuration is incomplete.
    pub fn open(&self) -> Result<Arc<dyn ObjectStore>, String> {
        Ok(match self {
            Self::File(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                Arc::new(LocalFileSystem::new_with_prefix(dir).map_err(|e| e.to_string())?)
            }
            Self::Memory => Arc::new(InMemory::new()),
            Self::S3(config) => {
                if config.bucket.is_empty() {
                    return Err("the S3 object store needs a bucket (--bucket)".into());
                }
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&config.bucket)
                    .with_region(&config.region)
                    .with_allow_http(config.allow_http);
                if let Some(endpoint) = &config.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(key) = &config.access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &config.secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                if let Some(token) = &config.session_token {
                    builder = builder.with_token(token);
                }
                // Every request's connection is driven by the runtime that opens the
                // store (the server's), whichever runtime asks: a plugin's query runs on
                // threads of lower priority, and the pooled connection it opened would
                // otherwise be driven there for every request after it.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    builder = builder.with_http_connector(SpawnedReqwestConnector::new(runtime));
                }
                Arc::new(
                    builder
                        .build()
                        .map_err(|e| format!("invalid S3 configuration: {e}"))?,
                )
            }
        })
    }
}
