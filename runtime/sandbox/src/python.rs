//! The Python runtime every instance runs: made on the sandbox's first start from what
//! `sluice-python-wasm` embeds, and cached.
//!
//! 1. The library (`python315.zip`, the standard library and the packages built into
//!    CPython; `sluice-runtime.zip`, the guest layer) is written to a directory of its own,
//!    which every instance sees read-only at [`LIBRARY_GUEST_DIR`].
//! 2. `python.wasm` is pre-initialised ([`snapshot`]): CPython started and the guest layer
//!    imported, so that an instance starts where they leave off.
//! 3. The snapshot is made a component of the `python` world ([`component`]) and
//!    compiled. Making and compiling it take a few minutes on 2 cores, once per version:
//!    the compiled component is kept in the artifact cache.

mod allocator;
mod component;
mod snapshot;

use crate::artifact_cache::ArtifactCache;
use crate::scratch::GUEST_TMP_DIR;
use sha2::{Digest, Sha256};
use sluice_python_wasm::{GUEST_LAYER, PYTHON_LIBRARY, PYTHON_RUNTIME_SHA256, PYTHON_WASM};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where an instance sees the runtime's library.
pub(crate) const LIBRARY_GUEST_DIR: &str = "/usr/local/lib";

/// Where an instance sees the plugin's files and the installed packages.
pub(crate) const GUEST_PLUGIN_DIR: &str = "/plugins";

/// Every instance's environment: given while the runtime is pre-initialised, since
/// `os.environ` is read then, once, and again to each instance.
pub(crate) const ENVIRONMENT: [(&str, &str); 3] = [
    ("PLUGIN_DIR", GUEST_PLUGIN_DIR),
    ("TZ", "UTC"),
    ("TMPDIR", GUEST_TMP_DIR),
];

/// The compiled runtime, and the directory of its library.
pub(crate) struct PythonRuntime {
    pub(crate) component: Component,
    /// The host directory behind [`LIBRARY_GUEST_DIR`], shared by every instance.
    library: Arc<Path>,
    /// For a sandbox without a cache, the temporary directory `library` is, removed with
    /// the sandbox.
    _temporary: Option<tempfile::TempDir>,
}

impl PythonRuntime {
    /// The runtime for `engine`, from `cache_dir` when it is there, made (and kept there)
    /// when it is not.
    pub(crate) fn prepare(engine: &Engine, cache_dir: Option<&Path>) -> wasmtime::Result<Self> {
        let (library, temporary) = match cache_dir {
            Some(dir) => (
                dir.join(format!("python-{}", &PYTHON_RUNTIME_SHA256[..16])),
                None,
            ),
            None => {
                let temporary = tempfile::Builder::new()
                    .prefix("sluice-python-")
                    .tempdir()?;
                (temporary.path().to_path_buf(), Some(temporary))
            }
        };
        write_library(&library)?;
        let make = || make_component(&library);
        let component = match cache_dir {
            Some(dir) => ArtifactCache::new(dir).load_or_make(engine, &cache_key(), make)?,
            None => Component::new(engine, make()?)?,
        };
        Ok(Self {
            component,
            library: Arc::from(library),
            _temporary: temporary,
        })
    }

    /// The host directory behind [`LIBRARY_GUEST_DIR`].
    pub(crate) fn library(&self) -> &Arc<Path> {
        &self.library
    }
}

/// What the made runtime is cached under: what it is made of, and how.
fn cache_key() -> String {
    let mut digest = Sha256::new();
    digest.update(PYTHON_RUNTIME_SHA256);
    digest.update(env!("PYTHON_RECIPE_SHA256"));
    hex::encode(digest.finalize())
}

/// Writes the library's files into `dir`, unless they are there: each to a temporary file
/// of its own first, so that a reader never sees half a file, and sandboxes starting at
/// once, in one process or several, never write over each other's.
fn write_library(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in [
        ("python315.zip", PYTHON_LIBRARY),
        ("sluice-runtime.zip", GUEST_LAYER),
    ] {
        let path = dir.join(name);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
            continue;
        }
        // Readable by all, as a file written plainly would be: a cache directory may be
        // shared by servers of other users.
        let mut temporary = tempfile::Builder::new()
            .prefix(&format!("{name}."))
            .permissions(std::fs::Permissions::from_mode(0o644))
            .tempfile_in(dir)?;
        temporary.write_all(bytes)?;
        temporary.persist(&path).map_err(|e| e.error)?;
    }
    Ok(())
}

/// The runtime as a component: pre-initialised with its library in `library`.
fn make_component(library: &Path) -> wasmtime::Result<Vec<u8>> {
    let started = Instant::now();
    tracing::info!("pre-initialising the Python runtime; this happens once per version");
    // On a thread of its own: WASI preview 1's synchronous functions run their own
    // runtime, which a caller's async runtime would not allow.
    let snapshot = std::thread::scope(|scope| {
        scope
            .spawn(|| snapshot::snapshot(PYTHON_WASM, library))
            .join()
            .unwrap_or_else(|_| {
                Err(wasmtime::format_err!(
                    "pre-initialising the runtime panicked"
                ))
            })
    })?;
    let component = component::build(&snapshot)?;
    tracing::info!(elapsed = ?started.elapsed(), "the Python runtime is pre-initialised");
    Ok(component)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandboxes_starting_at_once_write_the_library_once_whole() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let start = std::sync::Barrier::new(8);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    start.wait();
                    write_library(dir.path()).expect("every writer succeeds");
                });
            }
        });
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("readable")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["python315.zip", "sluice-runtime.zip"],
            "no temporary left"
        );
        assert_eq!(
            std::fs::read(dir.path().join("sluice-runtime.zip")).expect("written"),
            GUEST_LAYER
        );
        assert_eq!(
            std::fs::read(dir.path().join("python315.zip"))
                .expect("written")
                .len(),
            PYTHON_LIBRARY.len()
        );
    }
}
