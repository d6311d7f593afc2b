//! `sluice serve`: the database server.

use anyhow::Context;
use sluice_http::{AppState, router};
use sluice_query::QueryEngine;
use sluice_storage::WriteBuffer;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Where data is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectStoreKind {
    /// Files under `--data-dir`.
    File,
}

/// Flags of `sluice serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory holding the catalog, the WAL and (later) Parquet files
    #[arg(long, env = "INFLUXDB3_DB_DIR", default_value = "sluice-data")]
    data_dir: PathBuf,
    /// Where data is stored
    #[arg(long, env = "INFLUXDB3_OBJECT_STORE", value_enum, default_value = "file")]
    object_store: ObjectStoreKind,
    /// Address to listen on; port 0 picks a free port
    #[arg(long, env = "INFLUXDB3_HTTP_BIND_ADDR", default_value = "127.0.0.1:8181")]
    http_bind: SocketAddr,
    /// How often writes are made durable and queryable; writes without `no_sync` wait
    /// for the next flush, so this is also their added latency
    #[arg(long, env = "INFLUXDB3_WAL_FLUSH_INTERVAL", default_value = "1s", value_parser = positive_duration)]
    wal_flush_interval: Duration,
    /// Identifies this node in logs (optional)
    #[arg(long, env = "INFLUXDB3_NODE_IDENTIFIER_PREFIX")]
    node_id: Option<String>,
    /// Largest request body in bytes, after decompression; larger ones get 413
    #[arg(long, env = "INFLUXDB3_MAX_HTTP_REQUEST_SIZE", default_value_t = 10_485_760)]
    max_http_request_size: usize,
    /// Write the address actually bound to this file once listening (for port 0)
    #[arg(long)]
    tcp_listener_file_path: Option<PathBuf>,
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration: Duration = text.parse::<humantime::Duration>().map_err(|e| format!("invalid duration `{text}`: {e}"))?.into();
    if duration.is_zero() {
        return Err("the flush interval must be more than zero".into());
    }
    Ok(duration)
}

impl ServeArgs {
    /// Runs the server until Ctrl-C.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
        runtime.block_on(self.serve())?;
        Ok(ExitCode::SUCCESS)
    }

    async fn serve(self) -> anyhow::Result<()> {
        let ObjectStoreKind::File = self.object_store;
        tracing::info!(data_dir = %self.data_dir.display(), node_id = ?self.node_id, "opening the data directory");
        let (storage, recovery) = WriteBuffer::open(&self.data_dir)
            .with_context(|| format!("cannot open the data directory {}", self.data_dir.display()))?;
        tracing::info!(files = recovery.files, rows = recovery.rows, damaged = recovery.damage.len(), "replayed the WAL");
        let flusher = storage.spawn_flusher(self.wal_flush_interval);
        let state = AppState {
            storage: storage.clone(),
            query: QueryEngine::new(storage.clone()),
            max_request_bytes: self.max_http_request_size,
        };
        let listener = tokio::net::TcpListener::bind(self.http_bind)
            .await
            .with_context(|| format!("cannot listen on {}", self.http_bind))?;
        let address = listener.local_addr()?;
        if let Some(path) = &self.tcp_listener_file_path {
            std::fs::write(path, address.to_string()).with_context(|| format!("cannot write {}", path.display()))?;
        }
        tracing::info!("listening on http://{address}");
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the HTTP server failed")?;
        flusher.abort();
        storage.flush().await.context("the final flush failed")?;
        tracing::info!("stopped");
        Ok(())
    }
}
