//! `sluice create|delete database` and `sluice show databases`.

use super::client::{Client, ServerArgs, block_on, text_table};
use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::json;
use std::io::BufRead;
use std::process::ExitCode;

/// Flags of `sluice create database`.
#[derive(Debug, clap::Args)]
pub struct CreateDatabaseArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The new database's name
    name: String,
}

/// Flags of `sluice delete database`.
#[derive(Debug, clap::Args)]
pub struct DeleteDatabaseArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Delete without asking for confirmation on standard input
    #[arg(long, short = 'y')]
    yes: bool,
    /// The database to delete, with all its tables and rows
    name: String,
}

/// Flags of `sluice update database`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Each quota left out is the server's (`sluice serve \
    --max-triggers-per-database` and the like); a value of 0 or over the largest allowed is \
    refused. Example:\n  sluice update database -d acme --max-triggers 20 --max-concurrent-invocations 4")]
pub struct UpdateDatabaseArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The database
    #[arg(short = 'd', long = "database", env = "INFLUXDB3_DATABASE_NAME")]
    name: String,
    /// Triggers it may have
    #[arg(long)]
    max_triggers: Option<u64>,
    /// Bytes of plugin files its own plugin area may hold
    #[arg(long)]
    max_plugin_bytes: Option<u64>,
    /// Invocations of its triggers that may run at once
    #[arg(long)]
    max_concurrent_invocations: Option<u64>,
    /// Bytes its triggers' caches and its shared cache may hold together
    #[arg(long)]
    max_cache_bytes: Option<u64>,
    /// Bytes its own package environment may hold
    #[arg(long)]
    max_package_bytes: Option<u64>,
    /// Lines of line protocol one invocation of its triggers may write
    #[arg(long)]
    max_writes_per_invocation: Option<u64>,
}

impl UpdateDatabaseArgs {
    /// Sets the database's quotas.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        let quotas = sluice_catalog::QuotaOverrides {
            triggers: self.max_triggers,
            plugin_bytes: self.max_plugin_bytes,
            concurrent_invocations: self.max_concurrent_invocations,
            cache_bytes: self.max_cache_bytes,
            package_bytes: self.max_package_bytes,
            writes_per_invocation: self.max_writes_per_invocation,
        };
        block_on(
            client.send(
                client
                    .request(Method::PUT, "/api/v3/configure/database")
                    .json(&json!({"db": self.name, "quotas": quotas})),
            ),
        )?;
        println!("Database \"{}\" updated successfully", self.name);
        Ok(ExitCode::SUCCESS)
    }
}

/// Flags of `sluice show databases`.
#[derive(Debug, clap::Args)]
pub struct ShowDatabasesArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Output format
    #[arg(long, value_parser = ["pretty", "json"], default_value = "pretty")]
    format: String,
}

impl CreateDatabaseArgs {
    /// Creates the database.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        block_on(
            client.send(
                client
                    .request(Method::POST, "/api/v3/configure/database")
                    .json(&json!({"db": self.name})),
            ),
        )?;
        println!("Database \"{}\" created successfully", self.name);
        Ok(ExitCode::SUCCESS)
    }
}

impl DeleteDatabaseArgs {
    /// Deletes the database after confirmation.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        if !self.yes {
            println!(
                "Are you sure you want to delete \"{}\"? Enter 'yes' to confirm",
                self.name
            );
            let mut answer = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut answer)
                .context("cannot read the confirmation")?;
            if answer.trim() != "yes" {
                bail!("not deleted: the answer was not 'yes'");
            }
        }
        let client = Client::new(&self.server)?;
        block_on(
            client.send(
                client
                    .request(Method::DELETE, "/api/v3/configure/database")
                    .query(&[("db", &self.name)]),
            ),
        )?;
        println!("Database \"{}\" deleted successfully", self.name);
        Ok(ExitCode::SUCCESS)
    }
}

impl ShowDatabasesArgs {
    /// Lists the databases.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        let rows: Vec<serde_json::Value> = block_on(async {
            let response = client
                .send(client.request(Method::GET, "/api/v3/configure/database"))
                .await?;
            response
                .json()
                .await
                .context("the server's answer is not a list of databases")
        })?;
        if self.format == "json" {
            println!("{}", serde_json::Value::Array(rows));
            return Ok(ExitCode::SUCCESS);
        }
        let names: Vec<Vec<String>> = rows
            .iter()
            .filter_map(|row| row.get("iox::database").and_then(|n| n.as_str()))
            .map(|n| vec![n.to_string()])
            .collect();
        print!("{}", text_table(&["iox::database"], &names));
        Ok(ExitCode::SUCCESS)
    }
}
