//! `sluice show plugins` and `sluice show system`: the server's system tables.

use super::client::{Client, ServerArgs, block_on};
use super::query::{QueryFormat, print_query};
use anyhow::Context;
use reqwest::Method;
use serde_json::json;
use std::process::ExitCode;

/// Flags of `sluice show plugins`.
#[derive(Debug, clap::Args)]
pub struct ShowPluginsArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Output format
    #[arg(long, value_enum, default_value = "pretty")]
    format: QueryFormat,
}

impl ShowPluginsArgs {
    /// Lists the files of every trigger's plugin (`system.plugin_files` of `_internal`).
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        print_query(
            &client,
            "_internal",
            "SELECT * FROM system.plugin_files ORDER BY plugin_name, file_name",
            self.format,
            None,
        )?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Flags of `sluice show system`.
#[derive(Debug, clap::Args)]
pub struct ShowSystemArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The database whose system tables are shown
    #[arg(short = 'd', long, env = "INFLUXDB3_DATABASE_NAME")]
    database: String,
    #[command(subcommand)]
    what: SystemCommand,
}

/// What `sluice show system` shows.
#[derive(Debug, clap::Subcommand)]
enum SystemCommand {
    /// The names of the system tables
    TableList {
        /// Output format
        #[arg(long, value_enum, default_value = "pretty")]
        format: QueryFormat,
    },
    /// The rows of one system table
    Table {
        /// The table, for example processing_engine_triggers
        name: String,
        /// At most this many rows
        #[arg(short = 'l', long, default_value_t = 100)]
        limit: u32,
        /// Output format
        #[arg(long, value_enum, default_value = "pretty")]
        format: QueryFormat,
    },
    /// The first rows of every system table
    Summary {
        /// At most this many rows per table
        #[arg(short = 'l', long, default_value_t = 10)]
        limit: u32,
        /// Output format
        #[arg(long, value_enum, default_value = "pretty")]
        format: QueryFormat,
    },
}

const TABLE_LIST: &str = "SELECT table_name FROM information_schema.tables \
    WHERE table_schema = 'system' ORDER BY table_name";

/// `SELECT` of up to `limit` rows of the system table `name`.
fn table_query(name: &str, limit: u32) -> String {
    let quoted = name.replace('"', "\"\"");
    format!("SELECT * FROM system.\"{quoted}\" LIMIT {limit}")
}

impl ShowSystemArgs {
    /// Shows what was asked.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        let database = &self.database;
        match self.what {
            SystemCommand::TableList { format } => {
                print_query(&client, database, TABLE_LIST, format, None)?;
            }
            SystemCommand::Table {
                name,
                limit,
                format,
            } => print_query(&client, database, &table_query(&name, limit), format, None)?,
            SystemCommand::Summary { limit, format } => {
                for table in system_tables(&client, database)? {
                    println!("{table} summary:");
                    print_query(&client, database, &table_query(&table, limit), format, None)?;
                    println!();
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The names of the system tables of `database`.
fn system_tables(client: &Client, database: &str) -> anyhow::Result<Vec<String>> {
    let rows: Vec<serde_json::Value> = block_on(async {
        let request = client
            .request(Method::POST, "/api/v3/query_sql")
            .json(&json!({"db": database, "q": TABLE_LIST, "format": "json"}));
        let response = client.send(request).await?;
        response
            .json()
            .await
            .context("the server's answer is not a list of tables")
    })?;
    Ok(rows
        .iter()
        .filter_map(|row| row.get("table_name")?.as_str().map(str::to_string))
        .collect())
}
