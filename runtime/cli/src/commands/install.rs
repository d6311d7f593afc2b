//! `sluice install package`: Python packages for plugins, installed by the server.

use super::client::{Client, ServerArgs, block_on};
use super::serve::RuntimeKind;
use reqwest::Method;
use serde_json::json;
use std::process::ExitCode;

/// Flags of `sluice install package`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The server installs with pip into a package environment, which plugins \
    import from: with the admin token the shared one (.packages in the plugin directory), \
    which every plugin sees; with a database token that may manage the database named by \
    --database, that database's own, which its plugins see first. An install is swapped in \
    whole: a failed one leaves the environment as it was. Only pure-Python packages (with a py3-none-any wheel) can run \
    in the sandbox; installing any other fails with pip's explanation, unless it is for the \
    pyo3 runtime (--runtime pyo3). Packages come from \
    the index that pip's configuration on the server names (pip.conf, PIP_INDEX_URL); \
    pip options, files, directories and URLs are refused."
)]
pub struct InstallPackageArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// A requirements file, as a path on the server (in the database's plugin area with
    /// --database and a database token)
    #[arg(short = 'r', long, value_name = "PATH", conflicts_with = "packages")]
    requirements: Option<String>,
    /// The database whose own environment a database token installs into (the admin
    /// token always installs into the shared one)
    #[arg(short = 'd', long, env = "INFLUXDB3_DATABASE_NAME")]
    database: Option<String>,
    /// Packages of the index: `name`, `name==1.2`, `name[extra]>=1`
    #[arg(required_unless_present = "requirements")]
    packages: Vec<String>,
    /// The runtime whose plugins get the packages: `wasm`, pure-Python ones only; or
    /// `pyo3` (admin token only, on a server started with `--plugin-runtimes wasm,pyo3`),
    /// any package, native ones included, into the server's virtual
    /// environment (`--virtual-env-location`), which only pyo3 plugins see
    #[arg(long, value_enum, default_value = "wasm")]
    runtime: RuntimeKind,
}

impl InstallPackageArgs {
    /// Asks the server to install the packages; waits until it has.
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        let (path, body) = match self.requirements {
            Some(location) => (
                "/api/v3/configure/plugin_environment/install_requirements",
                json!({"requirements_location": location, "runtime": self.runtime.name()}),
            ),
            None => (
                "/api/v3/configure/plugin_environment/install_packages",
                json!({"packages": self.packages, "runtime": self.runtime.name()}),
            ),
        };
        eprintln!("installing on the server (pip may take a while)...");
        let mut request = client.request(Method::POST, path).json(&body);
        if let Some(database) = &self.database {
            request = request.query(&[("db", database)]);
        }
        block_on(client.send(request))?;
        Ok(ExitCode::SUCCESS)
    }
}
