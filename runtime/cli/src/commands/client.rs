//! What the client commands share: where the server is, the token, and one HTTP client
//! that turns error responses into readable errors.

use anyhow::{Context, bail};
use reqwest::{Method, RequestBuilder, Response};
use std::time::Duration;

/// Flags every client command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The server's URL
    #[arg(
        short = 'H',
        long = "host",
        env = "INFLUXDB3_HOST_URL",
        default_value = "http://127.0.0.1:8181",
        global = true
    )]
    pub host: String,
    /// Token sent as `Authorization: Bearer <token>`
    #[arg(
        long,
        env = "INFLUXDB3_AUTH_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
}

/// A client of one server.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client of the server `args` name.
    pub fn new(args: &ServerArgs) -> anyhow::Result<Self> {
        if !args.host.starts_with("http://") && !args.host.starts_with("https://") {
            bail!(
                "invalid --host `{}`: expected a URL such as http://127.0.0.1:8181",
                args.host
            );
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot create the HTTP client")?;
        Ok(Self {
            http,
            base: args.host.trim_end_matches('/').to_string(),
            token: args.token.clone(),
        })
    }

    /// A request to `path` (which starts with `/`).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request`; a non-success status becomes an error carrying the server's
    /// message.
    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| match (v.get("error"), v.get("data")) {
                (Some(error), Some(data)) if !data.is_null() => {
                    Some(format!("{} {data}", error.as_str().unwrap_or_default()))
                }
                (Some(error), _) => error.as_str().map(str::to_string),
                _ => v
                    .get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string),
            })
            .unwrap_or(body);
        bail!("server answered {status}: {message}")
    }
}

/// Runs `future` on a fresh single-threaded runtime.
pub fn block_on<T>(
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}

/// `rows` under `header` as a text table with rules, like the server's `pretty` format.
pub fn text_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .filter_map(|row| row.get(i))
                .map(|cell| cell.chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule = widths.iter().fold(String::from("+"), |line, width| {
        line + &"-".repeat(width + 2) + "+"
    });
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .fold(String::from("|"), |line, (cell, width)| {
                line + &format!(" {cell:<width$} |")
            })
    };
    let mut table = format!("{rule}\n{}\n{rule}\n", line(header.to_vec()));
    for row in rows {
        table.push_str(&line(row.iter().map(String::as_str).collect()));
        table.push('\n');
    }
    table.push_str(&rule);
    table.push('\n');
    table
}
