//! `/api/v3/configure/plugin_environment/install_packages` and `…/install_requirements`:
//! Python packages for plugins, installed by pip into `.packages` in the plugin directory,
//! which the sandbox mounts read-only with the plugins and puts on `sys.path`.
//!
//! The sandbox runs CPython compiled to WebAssembly, which loads no native extension, so
//! pip is asked for pure-Python wheels only: a package without one fails with pip's own
//! explanation. Any failed install is an error (upstream answers 200 whatever pip did).

use crate::AppState;
use crate::configure::json_body;
use crate::error::ApiError;
use crate::plugins::plugin_dir;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, PoisonError};

/// The directory under the plugin directory that packages are installed into.
pub const PACKAGES_DIR: &str = ".packages";

/// The Python version of the sandbox's runtime, for pip's choice of wheels.
const SANDBOX_PYTHON_VERSION: &str = "3.14";

/// How packages are installed (`sluice serve --package-manager`).
#[derive(Debug, Clone)]
pub enum PackageManager {
    /// `PYTHON -m pip install`, with this Python executable.
    Pip(String),
    /// Installs are refused with 403.
    Disabled,
}

/// The body of `…/install_packages`.
#[derive(Deserialize)]
struct InstallPackages {
    packages: Vec<String>,
}

/// The body of `…/install_requirements`: a requirements file on the server.
#[derive(Deserialize)]
struct InstallRequirements {
    requirements_location: String,
}

/// One install at a time: two pips writing the same directory would mix their files.
/// Held by the blocking task itself, which goes on even if the request is dropped.
static INSTALLING: Mutex<()> = Mutex::new(());

/// `POST /api/v3/configure/plugin_environment/install_packages`.
pub async fn install_packages(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: InstallPackages = json_body(&headers, &body)?;
    if request.packages.is_empty() {
        return Err(ApiError::BadRequest("no packages given".into()));
    }
    for package in &request.packages {
        check_requirement(package).map_err(ApiError::BadRequest)?;
    }
    install(&state, request.packages).await
}

/// Refuses what is not a requirement on a package of the index (a name, with extras,
/// versions and markers): pip options, and files, directories and URLs, whose builds
/// could run code on the server (only wheels, which run nothing, come from the index).
fn check_requirement(requirement: &str) -> Result<(), String> {
    if requirement
        .split_whitespace()
        .any(|word| word.starts_with('-'))
    {
        return Err(format!(
            "`{requirement}` is not a package: options cannot be passed to pip"
        ));
    }
    let name_end = requirement
        .find(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
        .unwrap_or(requirement.len());
    let name = &requirement[..name_end];
    let archive = [".whl", ".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz"]
        .iter()
        .any(|suffix| name.to_ascii_lowercase().ends_with(suffix));
    let valid_name = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid_name || archive || requirement.contains(['/', '\\', '@', ':']) {
        return Err(format!(
            "`{requirement}` is not a package name: only packages of the package index can be \
             installed, not files, directories or URLs"
        ));
    }
    Ok(())
}

/// The requirements of a requirements file's text, one per entry, each checked as
/// [`check_requirement`] does; pip is given them, never the file.
///
/// Comments, blank lines and continuations are handled as pip does.
fn requirements_in(text: &str) -> Result<Vec<String>, String> {
    let joined = text.replace("\\\r\n", "").replace("\\\n", "");
    let mut requirements = Vec::new();
    for line in joined.lines() {
        // A comment starts with a `#` at the start of the line or after whitespace.
        let comment = line
            .match_indices('#')
            .map(|(at, _)| at)
            .find(|&at| at == 0 || line[..at].ends_with(char::is_whitespace));
        let requirement = line[..comment.unwrap_or(line.len())].trim();
        if requirement.is_empty() {
            continue;
        }
        check_requirement(requirement)?;
        requirements.push(requirement.to_string());
    }
    Ok(requirements)
}

/// `POST /api/v3/configure/plugin_environment/install_requirements`.
pub async fn install_requirements(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: InstallRequirements = json_body(&headers, &body)?;
    let location = request.requirements_location;
    let text = tokio::fs::read_to_string(&location).await.map_err(|e| {
        ApiError::BadRequest(format!("cannot read the requirements file {location}: {e}"))
    })?;
    let requirements = requirements_in(&text)
        .map_err(|e| ApiError::BadRequest(format!("requirements file {location}: {e}")))?;
    if requirements.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "the requirements file {location} names no package"
        )));
    }
    install(&state, requirements).await
}

async fn install(state: &AppState, requirements: Vec<String>) -> Result<StatusCode, ApiError> {
    let python = match &state.package_manager {
        PackageManager::Disabled => {
            return Err(ApiError::Forbidden(
                "Package installation has been disabled. Contact your administrator for more \
                 information."
                    .into(),
            ));
        }
        PackageManager::Pip(python) => python.clone(),
    };
    let target = plugin_dir(state)?.root().join(PACKAGES_DIR);
    tracing::info!(?requirements, target = %target.display(), "installing plugin packages with pip");
    let installed = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = INSTALLING.lock().unwrap_or_else(PoisonError::into_inner);
        pip_install(&python, &target, &requirements)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the install did not finish: {e}")))??;
    tracing::info!("{installed}");
    // Warm instances loaded their plugins before the install: load them afresh.
    if let Some(engine) = &state.engine {
        engine.invoker.retain_pools(|_, _| false);
    }
    Ok(StatusCode::OK)
}

/// Runs pip; returns the end of its output (what it installed).
fn pip_install(python: &str, target: &Path, requirements: &[String]) -> Result<String, ApiError> {
    let output = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .args(["--upgrade", "--target"])
        .arg(target)
        .args([
            "--only-binary=:all:",
            "--implementation",
            "py",
            "--abi",
            "none",
        ])
        .args([
            "--platform",
            "any",
            "--python-version",
            SANDBOX_PYTHON_VERSION,
        ])
        .args(requirements)
        .output()
        .map_err(|e| ApiError::Internal(format!("cannot run `{python} -m pip`: {e}")))?;
    let last_lines = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    };
    if !output.status.success() {
        let stderr = last_lines(&output.stderr);
        if stderr.contains("No module named pip") {
            return Err(ApiError::Internal(format!(
                "`{python} -m pip` is not available on the server: {stderr}"
            )));
        }
        return Err(ApiError::BadRequest(format!(
            "installing {} failed (only pure-Python packages can run in the sandbox): {}",
            requirements.join(" "),
            stderr
        )));
    }
    Ok(last_lines(&output.stdout))
}

#[cfg(test)]
mod tests {
    use super::{check_requirement, requirements_in};

    #[test]
    fn requirements_are_names_of_index_packages() {
        for accepted in [
            "requests",
            "requests==2.31.0",
            "Flask[async]>=2,<4",
            "attrs>=1; python_version >= \"3.8\"",
            "zope.interface~=6.0",
        ] {
            assert_eq!(check_requirement(accepted), Ok(()), "{accepted}");
        }
        for (refused, why) in [
            ("--index-url=http://example.com", "options"),
            ("x --hash=sha256:00", "options"),
            ("-e .", "options"),
            ("./plugin-src", "not a package name"),
            ("/tmp/a-1.0-py3-none-any.whl", "not a package name"),
            ("a-1.0-py3-none-any.whl", "not a package name"),
            ("pkg.tar.gz", "not a package name"),
            ("pkg @ https://example.com/pkg.zip", "not a package name"),
            ("git+https://example.com/pkg", "not a package name"),
            ("C:\\pkg", "not a package name"),
            ("", "not a package name"),
        ] {
            let error = check_requirement(refused).expect_err(refused);
            assert!(error.contains(why), "{refused}: {error}");
        }
    }

    #[test]
    fn requirements_files_are_read_as_pip_reads_them() {
        let text = "# plugins' packages\n\nrequests==2.0  # pinned\nattrs>=1; python_version >= \"3.8\"\\\n \n\tsix # a#b\n";
        assert_eq!(
            requirements_in(text).expect("valid"),
            vec![
                "requests==2.0",
                "attrs>=1; python_version >= \"3.8\"",
                "six"
            ]
        );
        for refused in [
            "--index-url http://example.com\nx",
            "x\n-e .",
            "-r other.txt",
            "x\n./dir",
        ] {
            assert!(requirements_in(refused).is_err(), "{refused}");
        }
        assert_eq!(requirements_in("# nothing\n\n"), Ok(Vec::new()));
    }
}
