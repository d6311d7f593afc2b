//! Packages for the pyo3 runtime: any wheel of the index, native ones included (never a
//! source distribution, whose build would run its code on the server), installed
//! by pip into a virtual environment of their own (`sluice serve --virtual-env-location`,
//! by default `.venv` in the plugin directory, as upstream), which only the pyo3 runtime's
//! plugins see. Only the admin installs there: its packages run with the server's rights.
//!
//! The environment is made with the Python the pyo3 runtime links, the first time it is
//! needed. Installs go into it in place, one at a time (with the sandbox's, and within
//! the same deadline): pip itself leaves it whole when an install fails.

use crate::AppState;
use crate::error::ApiError;
use crate::pip::{INSTALLING, PackageManager, Pip};
use axum::http::StatusCode;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::time::Instant;

/// The pyo3 runtime's package environment.
#[derive(Debug, Clone)]
pub struct VirtualEnv {
    /// Where it is.
    pub location: PathBuf,
    /// The Python it is made with: the one the pyo3 runtime links.
    pub python: String,
}

impl VirtualEnv {
    /// Its interpreter, which runs its pip.
    fn interpreter(&self) -> PathBuf {
        self.location.join("bin").join("python")
    }

    /// Makes it, unless it is there.
    fn make(&self) -> Result<(), ApiError> {
        if self.interpreter().is_file() {
            return Ok(());
        }
        tracing::info!(location = %self.location.display(), "making the pyo3 runtime's virtual environment");
        let made = std::process::Command::new(&self.python)
            .args(["-m", "venv"])
            .arg(&self.location)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                ApiError::Internal(format!("cannot run `{} -m venv`: {e}", self.python))
            })?;
        if !made.status.success() {
            return Err(ApiError::Internal(format!(
                "cannot make the virtual environment {}: {}",
                self.location.display(),
                String::from_utf8_lossy(&made.stderr).trim()
            )));
        }
        Ok(())
    }
}

/// Installs `requirements` (checked already) into the pyo3 runtime's environment.
pub(crate) async fn install(
    state: &AppState,
    requirements: Vec<String>,
) -> Result<StatusCode, ApiError> {
    let Some(env) = state.virtual_env.clone() else {
        return Err(ApiError::BadRequest(
            "the pyo3 runtime is not enabled on this server: start it with \
             --plugin-runtimes wasm,pyo3"
                .into(),
        ));
    };
    let timeout = match &state.package_manager {
        PackageManager::Disabled => {
            return Err(ApiError::Forbidden(
                "Package installation has been disabled. Contact your administrator for more \
                 information."
                    .into(),
            ));
        }
        PackageManager::Pip { timeout, .. } => *timeout,
    };
    tracing::info!(
        ?requirements,
        "installing packages for the pyo3 runtime with pip"
    );
    let installed = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = INSTALLING.lock().unwrap_or_else(PoisonError::into_inner);
        env.make()?;
        let python = env.interpreter();
        let pip = Pip {
            python: &python.to_string_lossy(),
            timeout,
            deadline: Instant::now() + timeout,
            requirements: &requirements,
            failed_because: "",
        };
        // Wheels only: a source distribution's build would run its code on the server.
        let mut install: Vec<OsString> = vec!["install".into(), "--only-binary=:all:".into()];
        install.extend(requirements.iter().map(OsString::from));
        pip.run(&install)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the install did not finish: {e}")))??;
    tracing::info!("{installed}");
    Ok(StatusCode::OK)
}

/// The site-packages directory of the environment at `location` for Python `version`
/// (`3.11`): what the pyo3 runtime puts on its path.
pub fn site_packages(location: &Path, version: &str) -> PathBuf {
    location
        .join("lib")
        .join(format!("python{version}"))
        .join("site-packages")
}
