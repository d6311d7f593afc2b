//! `sluice write`: send line protocol to a server.

use super::client::{Client, ServerArgs, block_on};
use anyhow::{Context, bail};
use reqwest::Method;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `sluice write`.
#[derive(Debug, clap::Args)]
pub struct WriteArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The database to write to (created if missing)
    #[arg(short = 'd', long, env = "INFLUXDB3_DATABASE_NAME")]
    database: String,
    /// Read line protocol from this file
    #[arg(short = 'f', long, conflicts_with = "line_protocol")]
    file: Option<PathBuf>,
    /// Unit of the timestamps: auto, s, ms, us or ns
    #[arg(long, default_value = "auto")]
    precision: String,
    /// Refuse the whole write if any line is invalid (by default valid lines are written)
    #[arg(long)]
    no_partial: bool,
    /// Return before the write is durable
    #[arg(long)]
    no_sync: bool,
    /// Line protocol; without it and without --file, it is read from standard input
    line_protocol: Option<String>,
}

impl WriteArgs {
    /// Sends the write.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let body = match (&self.line_protocol, &self.file) {
            (Some(lines), _) => lines.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            (None, None) => {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read standard input")?;
                text
            }
        };
        if body.trim().is_empty() {
            bail!("no line protocol to write");
        }
        let client = Client::new(&self.server)?;
        block_on(async {
            let request = client
                .request(Method::POST, "/api/v3/write_lp")
                .body(body)
                .query(&[
                    ("db", self.database.as_str()),
                    ("precision", self.precision.as_str()),
                    (
                        "accept_partial",
                        if self.no_partial { "false" } else { "true" },
                    ),
                    ("no_sync", if self.no_sync { "true" } else { "false" }),
                ]);
            client.send(request).await
        })?;
        println!("success");
        Ok(ExitCode::SUCCESS)
    }
}
