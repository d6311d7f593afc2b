//! `/api/v3/configure/plugin_environment/install_packages` and `…/install_requirements`:
//! Python packages for plugins, installed by pip into a package environment, which the
//! sandbox mounts read-only and puts on `sys.path`. The admin installs into the shared
//! environment (`.packages` in the plugin directory), which every plugin sees; a token
//! that manages a database, into that database's (`?db=NAME`), which its plugins see
//! first, so two databases may have two versions of one package. An install builds a new
//! environment beside the old one and swaps it in whole
//! ([`Environment`](sluice_engine::environment::Environment)).
//!
//! The sandbox runs CPython compiled to WebAssembly, which loads no native extension, so
//! pip is asked for pure-Python wheels only: a package without one fails with pip's own
//! explanation. Any failed install is an error (upstream answers 200 whatever pip did).
//!
//! Only packages of the index are installed, never code on the server: each requirement
//! must be a package name (with extras, versions and markers), pip gets nothing else, and
//! it runs in an empty directory of its own, so that no name can be read as a local file
//! or directory whose build would run. A requirements file is read from the plugin
//! directory only, and errors about it never quote it.
//!
//! Installs run one at a time, each within a deadline (`sluice serve
//! --package-install-timeout`): pip still running then is killed and nothing is
//! installed, so no install holds the others back for longer.

use crate::AppState;
use crate::configure::json_body;
use crate::error::ApiError;
use crate::plugins::{Owner, owner, plugin_areas};
use crate::triggers::check_runtime;
use axum::body::Bytes;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use sluice_catalog::{Access, Runtime};
use sluice_engine::disk::tree_bytes_at;
use sluice_engine::environment::Environment;
use sluice_engine::plugin_dir::{PluginDir, PluginDirError};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

pub use crate::pip::PackageManager;
use crate::pip::{INSTALLING, Pip};
pub use sluice_plugin_api::PACKAGES_DIR;

/// The Python version of the sandbox's runtime, for pip's choice of wheels.
const SANDBOX_PYTHON_VERSION: &str = "3.15";

/// The largest requirements file read.
const MAX_REQUIREMENTS_BYTES: u64 = 1 << 20;

/// The body of `…/install_packages`.
#[derive(Deserialize)]
struct InstallPackages {
    packages: Vec<String>,
    /// Not upstream's: the runtime whose plugins get the packages.
    #[serde(default)]
    runtime: Runtime,
}

/// The body of `…/install_requirements`: a requirements file in the plugin directory.
#[derive(Deserialize)]
struct InstallRequirements {
    requirements_location: String,
    /// Not upstream's: the runtime whose plugins get the packages.
    #[serde(default)]
    runtime: Runtime,
}

/// Where an install goes: the shared environment for the admin; for a database token,
/// the environment of the database `?db=` names, which it must manage. Also the
/// directory a requirements file is read from, and the database, if any.
fn target(
    state: &AppState,
    access: &Access,
    db: Option<&String>,
) -> Result<(Environment, Arc<PluginDir>, Option<String>), ApiError> {
    let areas = plugin_areas(state)?;
    match owner(
        state,
        access,
        db,
        "installing into the shared package environment",
    )? {
        Owner::Shared => Ok((areas.shared_environment(), Arc::clone(areas.shared()), None)),
        Owner::Database { name, id } => {
            let area = areas
                .database(id)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok((areas.database_environment(id), area, Some(name)))
        }
    }
}

/// `POST /api/v3/configure/plugin_environment/install_packages`.
pub async fn install_packages(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let (environment, _, database) = target(&state, &access, params.get("db"))?;
    let request: InstallPackages = json_body(&headers, &body)?;
    check_runtime(&state, &access, request.runtime)?;
    if request.packages.is_empty() {
        return Err(ApiError::BadRequest("no packages given".into()));
    }
    for package in &request.packages {
        check_requirement(package)
            .map_err(|refused| ApiError::BadRequest(format!("`{package}` {refused}")))?;
    }
    match request.runtime {
        Runtime::Wasm => install(&state, environment, database, request.packages).await,
        Runtime::Pyo3 => crate::virtual_env::install(&state, request.packages).await,
    }
}

/// Why a requirement is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Refused {
    /// It holds a pip option.
    #[error("is not a package: options cannot be passed to pip")]
    Option,
    /// It is not a package name (a file, a directory, a URL, an archive).
    #[error(
        "is not a package name: only packages of the package index can be installed, not \
         files, directories or URLs"
    )]
    NotAName,
}

/// The names pip reads as archives, whatever exists under them: refused even though pip
/// runs where no file is.
const ARCHIVE_SUFFIXES: [&str; 12] = [
    ".whl",
    ".zip",
    ".tar",
    ".tar.gz",
    ".tgz",
    ".tar.bz2",
    ".tbz",
    ".tar.xz",
    ".txz",
    ".tlz",
    ".tar.lz",
    ".tar.lzma",
];

/// Refuses what is not a requirement on a package of the index (a name, with extras,
/// versions and markers): pip options, and files, directories and URLs, whose builds
/// could run code on the server (only wheels, which run nothing, come from the index).
fn check_requirement(requirement: &str) -> Result<(), Refused> {
    if requirement
        .split_whitespace()
        .any(|word| word.starts_with('-'))
    {
        return Err(Refused::Option);
    }
    let name_end = requirement
        .find(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
        .unwrap_or(requirement.len());
    let name = &requirement[..name_end];
    let lower = name.to_ascii_lowercase();
    let archive = ARCHIVE_SUFFIXES
        .iter()
        .any(|suffix| lower.ends_with(suffix));
    // PEP 508: a name starts and ends with a letter or digit.
    let valid_name = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid_name || archive || requirement.contains(['/', '\\', '@', ':']) {
        return Err(Refused::NotAName);
    }
    Ok(())
}

/// The requirements of a requirements file's text, one per entry, each checked as
/// [`check_requirement`] does; pip is given them, never the file. An error names the
/// line, not what is on it.
///
/// Comments, blank lines and continuations are handled as pip does.
fn requirements_in(text: &str) -> Result<Vec<String>, String> {
    let mut requirements = Vec::new();
    let mut entry = String::new();
    let mut first_line = 0;
    for (index, line) in text.lines().enumerate() {
        if entry.is_empty() {
            first_line = index + 1;
        }
        if let Some(continued) = line.strip_suffix('\\') {
            entry.push_str(continued);
            continue;
        }
        entry.push_str(line);
        let whole = std::mem::take(&mut entry);
        // A comment starts with a `#` at the start of the line or after whitespace.
        let comment = whole
            .match_indices('#')
            .map(|(at, _)| at)
            .find(|&at| at == 0 || whole[..at].ends_with(char::is_whitespace));
        let requirement = whole[..comment.unwrap_or(whole.len())].trim();
        if requirement.is_empty() {
            continue;
        }
        check_requirement(requirement).map_err(|refused| format!("line {first_line} {refused}"))?;
        requirements.push(requirement.to_string());
    }
    Ok(requirements)
}

/// The name in the plugin directory of the requirements file at `location`: relative
/// to the plugin directory, or an absolute path inside it.
fn requirements_name(dir: &PluginDir, location: &str) -> Option<String> {
    let path = Path::new(location);
    if !path.is_absolute() {
        return Some(location.to_string());
    }
    let root = std::fs::canonicalize(dir.root()).ok()?;
    let parent = std::fs::canonicalize(path.parent()?).ok()?;
    let inside = parent.strip_prefix(&root).ok()?.join(path.file_name()?);
    Some(inside.to_string_lossy().into_owned())
}

/// `POST /api/v3/configure/plugin_environment/install_requirements`.
pub async fn install_requirements(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let (environment, dir, database) = target(&state, &access, params.get("db"))?;
    let request: InstallRequirements = json_body(&headers, &body)?;
    check_runtime(&state, &access, request.runtime)?;
    let location = request.requirements_location;
    let unreadable = |why: String| {
        ApiError::BadRequest(format!(
            "cannot read the requirements file {location}: {why} (it must be a file in the \
             plugin directory)"
        ))
    };
    let name = requirements_name(&dir, &location)
        .ok_or_else(|| unreadable("it is outside the plugin directory".into()))?;
    let content = tokio::task::spawn_blocking(move || dir.read_file(&name, MAX_REQUIREMENTS_BYTES))
        .await
        .map_err(|e| ApiError::Internal(format!("the read did not finish: {e}")))?
        .map_err(|e| match e {
            PluginDirError::Traversal(_) => unreadable("it is outside the plugin directory".into()),
            PluginDirError::Io { source, .. } => unreadable(source.kind().to_string()),
            other => unreadable(other.to_string()),
        })?;
    let text = String::from_utf8(content).map_err(|_| unreadable("it is not text".into()))?;
    let requirements = requirements_in(&text)
        .map_err(|e| ApiError::BadRequest(format!("requirements file {location}: {e}")))?;
    if requirements.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "the requirements file {location} names no package"
        )));
    }
    match request.runtime {
        Runtime::Wasm => install(&state, environment, database, requirements).await,
        Runtime::Pyo3 => crate::virtual_env::install(&state, requirements).await,
    }
}

/// Installs `requirements` into `environment`, of `database` when it is a database's.
async fn install(
    state: &AppState,
    environment: Environment,
    database: Option<String>,
    requirements: Vec<String>,
) -> Result<StatusCode, ApiError> {
    let (python, timeout) = match &state.package_manager {
        PackageManager::Disabled => {
            return Err(ApiError::Forbidden(
                "Package installation has been disabled. Contact your administrator for more \
                 information."
                    .into(),
            ));
        }
        PackageManager::Pip { python, timeout } => (python.clone(), *timeout),
    };
    tracing::info!(?requirements, database = ?database, "installing plugin packages with pip");
    // A database's environment is held to its quota; the shared one is the admin's.
    let max_bytes = match (&database, &state.engine) {
        (Some(database), Some(engine)) => engine.invoker.quotas_of(database).package_bytes,
        _ => u64::MAX,
    };
    let installed = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = INSTALLING.lock().unwrap_or_else(PoisonError::into_inner);
        environment.install(|build| {
            let installed = pip_install((&python, timeout), build, &requirements)?;
            let holds = tree_bytes_at(build);
            if holds > max_bytes {
                return Err(ApiError::Forbidden(format!(
                    "installing {} would make the database's packages {holds} bytes: its \
                     max-package-bytes quota is {max_bytes}; nothing was installed",
                    requirements.join(" ")
                )));
            }
            Ok(installed)
        })
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the install did not finish: {e}")))??;
    tracing::info!("{installed}");
    // Warm instances loaded their plugins before the install: load them afresh (all of
    // them after a shared install, the database's after its own).
    if let Some(engine) = &state.engine {
        let catalog = state.storage.catalog();
        let ours: Option<HashSet<_>> = database.map(|db| {
            let triggers = catalog.triggers(&db).unwrap_or_default();
            triggers.into_iter().map(|t| t.id).collect()
        });
        engine
            .invoker
            .retain_pools(|trigger| ours.as_ref().is_some_and(|ours| !ours.contains(&trigger)));
    }
    Ok(StatusCode::OK)
}

/// Installs `requirements` into `target` with pip, for at most `timeout` in all; returns
/// the end of pip's output (what it installed).
///
/// In two steps, because `pip install` checks each package's `Requires-Python` against
/// the Python that runs pip, not the sandbox's (`--python-version` only chooses wheels):
/// pip 23 would refuse a package needing 3.12 on a server whose `python3` is 3.11, or
/// quietly pick an older version of it. So `pip download` resolves the requirements for
/// the sandbox's Python into a directory of wheels, and `pip install` then installs
/// exactly those files, without resolving again.
fn pip_install(
    (python, timeout): (&str, Duration),
    target: &Path,
    requirements: &[String],
) -> Result<String, ApiError> {
    let deadline = Instant::now() + timeout;
    let pip = Pip {
        python,
        timeout,
        deadline,
        requirements,
        failed_because: SANDBOX_ONLY,
    };
    let internal = |what: &str, e: std::io::Error| ApiError::Internal(format!("{what}: {e}"));
    let wheels = tempfile::tempdir().map_err(|e| internal("cannot make pip's directory", e))?;
    let sandbox_wheels = [
        "--only-binary=:all:",
        "--implementation",
        "py",
        "--abi",
        "none",
        "--platform",
        "any",
        "--python-version",
        SANDBOX_PYTHON_VERSION,
    ];
    let mut download: Vec<OsString> = ["download", "--dest"].map(OsString::from).to_vec();
    download.push(wheels.path().into());
    download.extend(sandbox_wheels.map(OsString::from));
    download.extend(requirements.iter().map(OsString::from));
    pip.run(&download)?;
    let mut files: Vec<OsString> = std::fs::read_dir(wheels.path())
        .map_err(|e| internal("cannot list the downloaded wheels", e))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().into_os_string()))
        .collect();
    files.sort();
    let mut install: Vec<OsString> = [
        "install",
        "--no-index",
        "--no-deps",
        "--ignore-requires-python",
        "--upgrade",
        "--target",
    ]
    .map(OsString::from)
    .to_vec();
    install.push(target.into());
    install.extend(sandbox_wheels.map(OsString::from));
    install.extend(files);
    pip.run(&install)
}

/// Why an install for the sandbox may fail, said with pip's own reason.
const SANDBOX_ONLY: &str = "only pure-Python packages can run in the sandbox; one with native \
     code can on the pyo3 runtime: install it with --runtime pyo3, for the admin's triggers \
     created with --runtime pyo3";

#[cfg(test)]
mod tests {
    use super::{Refused, check_requirement, requirements_in};

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
            ("--index-url=http://example.com", Refused::Option),
            ("x --hash=sha256:00", Refused::Option),
            ("-e .", Refused::Option),
            ("./plugin-src", Refused::NotAName),
            ("/tmp/a-1.0-py3-none-any.whl", Refused::NotAName),
            ("a-1.0-py3-none-any.whl", Refused::NotAName),
            ("pkg.tar.gz", Refused::NotAName),
            ("evil.tbz", Refused::NotAName),
            ("evil.TXZ", Refused::NotAName),
            ("evil.tar.lzma", Refused::NotAName),
            ("pkg @ https://example.com/pkg.zip", Refused::NotAName),
            ("git+https://example.com/pkg", Refused::NotAName),
            ("C:\\pkg", Refused::NotAName),
            ("", Refused::NotAName),
        ] {
            assert_eq!(check_requirement(refused), Err(why), "{refused}");
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
        for (refused, line) in [
            ("--index-url http://example.com\nx", 1),
            ("x\n-e .", 2),
            ("-r other.txt", 1),
            ("x\n\n./secret-value", 3),
            ("x \\\n ./secret-value", 1),
        ] {
            let error = requirements_in(refused).expect_err(refused);
            assert!(
                error.starts_with(&format!("line {line} is not a")),
                "{error}"
            );
            assert!(!error.contains("secret"), "the file is not quoted: {error}");
        }
        assert_eq!(requirements_in("# nothing\n\n"), Ok(Vec::new()));
    }
}
