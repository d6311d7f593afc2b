//! `sluice query`: run SQL on a server and print the rows.

use super::client::{Client, ServerArgs, block_on};
use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Output formats of `sluice query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryFormat {
    /// A text table
    Pretty,
    /// An array of objects
    Json,
    /// One object per line
    Jsonl,
    /// Comma-separated values with a header line
    Csv,
    /// A Parquet file (needs --output)
    Parquet,
}

impl QueryFormat {
    fn name(self) -> &'static str {
        match self {
            Self::Pretty => "pretty",
            Self::Json => "json",
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        }
    }
}

/// Flags of `sluice query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The database to query
    #[arg(short = 'd', long, env = "INFLUXDB3_DATABASE_NAME")]
    database: String,
    /// Output format
    #[arg(long, value_enum, default_value = "pretty")]
    format: QueryFormat,
    /// Write the output to this file instead of standard output
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Read the query from this file
    #[arg(short = 'f', long, conflicts_with = "query")]
    file: Option<PathBuf>,
    /// The SQL query
    query: Option<String>,
}

impl QueryArgs {
    /// Runs the query.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let sql = match (&self.query, &self.file) {
            (Some(sql), _) => sql.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            (None, None) => bail!("give a query, or --file with one"),
        };
        if self.format == QueryFormat::Parquet && self.output.is_none() {
            bail!("--format parquet writes binary output: give --output FILE");
        }
        let client = Client::new(&self.server)?;
        print_query(
            &client,
            &self.database,
            &sql,
            self.format,
            self.output.as_deref(),
        )?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Runs `sql` on `database` and writes the answer, in `format`, to `output` or to
/// standard output.
pub(super) fn print_query(
    client: &Client,
    database: &str,
    sql: &str,
    format: QueryFormat,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let body = block_on(async {
        let request = client
            .request(Method::POST, "/api/v3/query_sql")
            .json(&json!({"db": database, "q": sql, "format": format.name()}));
        let response = client.send(request).await?;
        response.bytes().await.context("the response was cut short")
    })?;
    match output {
        Some(path) => {
            std::fs::write(path, &body).with_context(|| format!("cannot write {}", path.display()))
        }
        None => std::io::stdout()
            .write_all(&body)
            .context("cannot write to standard output"),
    }
}
