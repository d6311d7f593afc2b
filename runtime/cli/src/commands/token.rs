//! `sluice create token`, `sluice delete token` and `sluice show tokens`.

use super::client::{Client, ServerArgs, block_on, text_table};
use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `sluice create token`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    sluice create token --admin                                      # the first token of a new server\n  \
    sluice create token --admin --regenerate                         # replace it; the old one stops working\n  \
    sluice create token --name dashboards --permission 'db:metrics:read'\n  \
    sluice create token --name agents --permission 'db:a,b:write' --expiry 30d\n  \
    sluice create token --name tenant-a --permission 'db:a:read,write,manage'")]
pub struct CreateTokenArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Create the admin token: it may do everything. Needs no `--token` while the server
    /// has none
    #[arg(long, conflicts_with_all = ["name", "permission", "expiry"])]
    admin: bool,
    /// With `--admin`: replace the admin token (send the current one with `--token`)
    #[arg(long, requires = "admin")]
    regenerate: bool,
    /// Name of a database token
    #[arg(long, required_unless_present = "admin")]
    name: Option<String>,
    /// What a database token may do, as `db:NAMES:ACTIONS`: NAMES is a comma-separated
    /// list of databases or `*`, ACTIONS a comma-separated list of `read` (query),
    /// `write`, `manage` (create, change, test and delete the databases' triggers) and
    /// `invoke` (call their request triggers, as `read` may too); or `system:metrics:read`
    /// (read `/metrics`, for a Prometheus scraper). Repeatable
    #[arg(long, required_unless_present = "admin", value_parser = permission)]
    permission: Vec<Value>,
    /// Stop accepting the token after this long (`1h`, `30d`); never by default
    #[arg(long, value_parser = humantime::parse_duration)]
    expiry: Option<Duration>,
    /// Output format
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    format: String,
}

/// Parses `db:NAMES:ACTIONS` (or `system:metrics:read`) into the server's permission
/// object.
fn permission(text: &str) -> Result<Value, String> {
    if text == "system:metrics:read" {
        return Ok(
            json!({"resource_type": "system", "resource_names": ["metrics"], "actions": ["read"]}),
        );
    }
    let mut parts = text.splitn(3, ':');
    let (Some("db"), Some(names), Some(actions)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "invalid permission `{text}`: expected db:NAMES:ACTIONS, e.g. db:metrics:read,write,manage"
        ));
    };
    let names: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    if names.is_empty()
        || actions.is_empty()
        || actions
            .iter()
            .any(|a| !matches!(*a, "read" | "write" | "manage" | "invoke"))
    {
        return Err(format!(
            "invalid permission `{text}`: name at least one database (or *) and one or more of the actions read, write, manage and invoke"
        ));
    }
    Ok(json!({"resource_type": "db", "resource_names": names, "actions": actions}))
}

/// Flags of `sluice delete token`.
#[derive(Debug, clap::Args)]
pub struct DeleteTokenArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The token to delete; it stops working at once
    #[arg(long)]
    token_name: String,
}

/// Flags of `sluice show tokens`.
#[derive(Debug, clap::Args)]
pub struct ShowTokensArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Output format
    #[arg(long, value_parser = ["pretty", "json"], default_value = "pretty")]
    format: String,
}

impl CreateTokenArgs {
    /// Creates the token and prints it: the only time it is shown.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        let request = match (self.admin, self.regenerate) {
            (true, false) => client.request(Method::POST, "/api/v3/configure/token/admin"),
            (true, true) => {
                client.request(Method::POST, "/api/v3/configure/token/admin/regenerate")
            }
            (false, _) => client
                .request(Method::POST, "/api/v3/configure/token")
                .json(&json!({
                    "token_name": self.name,
                    "permissions": self.permission,
                    "expiry_secs": self.expiry.map(|d| d.as_secs()),
                })),
        };
        let created: Value = block_on(async {
            let response = client.send(request).await?;
            response
                .json()
                .await
                .context("the server's answer is not a token")
        })?;
        let Some(token) = created.get("token").and_then(Value::as_str) else {
            bail!("the server's answer holds no token: {created}");
        };
        if self.format == "json" {
            println!("{created}");
        } else {
            println!(
                "New token created successfully!\n\nToken: {token}\nHTTP Requests Header: Authorization: Bearer {token}\n\n\
                 IMPORTANT: Store this token securely, as it will not be shown again."
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl DeleteTokenArgs {
    /// Deletes the token.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        block_on(
            client.send(
                client
                    .request(Method::DELETE, "/api/v3/configure/token")
                    .query(&[("token_name", &self.token_name)]),
            ),
        )?;
        println!("Token \"{}\" deleted successfully", self.token_name);
        Ok(ExitCode::SUCCESS)
    }
}

fn describe_permissions(permissions: &Value) -> String {
    match permissions {
        Value::Array(grants) => grants
            .iter()
            .map(|g| {
                let join = |key: &str| {
                    g[key]
                        .as_array()
                        .map(|items| {
                            items
                                .iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default()
                };
                let kind = g["resource_type"].as_str().unwrap_or("db");
                format!("{kind}:{}:{}", join("resource_names"), join("actions"))
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.as_str().unwrap_or_default().to_string(),
    }
}

impl ShowTokensArgs {
    /// Lists the tokens (never their secrets).
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        let rows: Vec<Value> = block_on(async {
            let response = client
                .send(client.request(Method::GET, "/api/v3/configure/token"))
                .await?;
            response
                .json()
                .await
                .context("the server's answer is not a list of tokens")
        })?;
        if self.format == "json" {
            println!("{}", Value::Array(rows));
            return Ok(ExitCode::SUCCESS);
        }
        let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    text(&r["id"]),
                    text(&r["name"]),
                    describe_permissions(&r["permissions"]),
                    text(&r["created_at"]),
                    text(&r["expiry"]),
                ]
            })
            .collect();
        print!(
            "{}",
            text_table(
                &["id", "name", "permissions", "created_at", "expiry"],
                &cells
            )
        );
        Ok(ExitCode::SUCCESS)
    }
}
