//! `sluice show storage-problems` and `sluice delete unreferenced-files`: what start-up
//! found wrong with the stored data, and the removal of the files nothing refers to.

use super::client::{Client, ServerArgs, block_on};
use super::query::{QueryFormat, print_query};
use anyhow::Context;
use reqwest::Method;
use std::process::ExitCode;

/// Flags of `sluice show storage-problems`.
#[derive(Debug, clap::Args)]
pub struct ShowStorageProblemsArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Output format
    #[arg(long, value_enum, default_value = "pretty")]
    format: QueryFormat,
}

impl ShowStorageProblemsArgs {
    /// Lists every problem of the server (`system.storage_problems` of `_internal`).
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        print_query(
            &client,
            "_internal",
            "SELECT * FROM system.storage_problems ORDER BY kind, object",
            self.format,
            None,
        )?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Flags of `sluice delete unreferenced-files`.
#[derive(Debug, clap::Args)]
pub struct DeleteUnreferencedArgs {
    #[command(flatten)]
    server: ServerArgs,
}

impl DeleteUnreferencedArgs {
    /// Deletes the Parquet files that start-up found nothing refers to (the
    /// `unreferenced` rows of `sluice show storage-problems`), and names them.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        let answer: serde_json::Value = block_on(async {
            let response = client
                .send(client.request(Method::DELETE, "/api/v3/configure/storage/unreferenced"))
                .await?;
            response
                .json()
                .await
                .context("the server's answer is not JSON")
        })?;
        let removed = answer["removed"].as_array().cloned().unwrap_or_default();
        for path in &removed {
            println!("removed {}", path.as_str().unwrap_or_default());
        }
        println!("{} unreferenced files removed", removed.len());
        Ok(ExitCode::SUCCESS)
    }
}
