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
