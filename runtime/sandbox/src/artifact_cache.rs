//! Compiled components, cached on disk.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components, keyed by the wasm's SHA-256, the wasmtime version
/// and the engine configuration (wasmtime's compatibility hash), so that a changed
/// runtime, a new wasmtime or different engine settings never load a stale artifact.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file an artifact of `wasm_sha256` compiled by `engine` lives in.
    pub fn path_for(&self, engine: &Engine, wasm_sha256: &str) -> PathBuf {
        let mut engine_hash = StableHasher::default();
        engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let key = format!(
            "{}-{:016x}",
            &wasm_sha256[..16.min(wasm_sha256.len())],
            engine_hash.finish()
        );
        self.dir.join(format!("{key}.cwasm"))
    }

    /// Loads the component from the cache, or makes its wasm with `make`, compiles it and
    /// stores it. Processes sharing the cache make it once: the others wait for the first.
    /// The artifact is then marked as used, and those unused for [`UNUSED_FOR`] removed.
    pub fn load_or_make(
        &self,
        engine: &Engine,
        wasm_sha256: &str,
        make: impl FnOnce() -> wasmtime::Result<Vec<u8>>,
    ) -> wasmtime::Result<Component> {
        let path = self.path_for(engine, wasm_sha256);
        let component = self.load_or_make_at(engine, &path, make)?;
        mark_used(&path);
        self.prune(&path, SystemTime::now());
        Ok(component)
    }

    fn load_or_make_at(
        &self,
        engine: &Engine,
        path: &Path,
        make: impl FnOnce() -> wasmtime::Result<Vec<u8>>,
    ) -> wasmtime::Result<Component> {
        if let Some(component) = cached(engine, path) {
            return Ok(component);
        }
        std::fs::create_dir_all(&self.dir)?;
        let lock = std::fs::File::create(path.with_extension("lock"))?;
        // Released when `lock` drops, or when the process ends, however it ends.
        lock.lock()?;
        if let Some(component) = cached(engine, path) {
            return Ok(component);
        }
        let wasm = make()?;
        tracing::info!(
            "compiling the Python runtime ({} MB); this happens once per version",
            wasm.len() >> 20
        );
        let component = Component::new(engine, &wasm)?;
        if let Err(e) = self.store(path, &component) {
            tracing::warn!(path = %path.display(), "cannot cache the compiled runtime: {e:#}");
        }
        Ok(component)
    }

    /// Removes the artifacts other than `keep` that no server has loaded for
    /// [`UNUSED_FOR`] before `now`, with their lock files: each version of the runtime
    /// leaves one of a few hundred MB, and an upgrade would otherwise keep them all. A
    /// server still running one has it mapped and loses nothing; one started again makes
    /// it again.
    fn prune(&self, keep: &Path, now: SystemTime) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path == keep || path.extension().is_none_or(|e| e != "cwasm") {
                continue;
            }
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            let last_used = metadata.modified().unwrap_or(now);
            if now.duration_since(last_used).unwrap_or_default() < UNUSED_FOR {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    let _ = std::fs::remove_file(path.with_extension("lock"));
                    tracing::info!(
                        path = %path.display(),
                        megabytes = metadata.len() >> 20,
                        "removed a compiled runtime no server has loaded for {} days",
                        UNUSED_FOR.as_secs() / 86_400
                    );
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot remove an unused compiled runtime: {e}");
                }
            }
        }
    }

    fn store(&self, path: &Path, component: &Component) -> wasmtime::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = component.serialize()?;
        // Write then rename, so that a concurrent reader never sees half a file.
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, path)?;
        Ok(())
    }
}

/// How long an artifact stays in the cache after a server last loaded it.
const UNUSED_FOR: Duration = Duration::from_secs(14 * 86_400);

/// Marks the artifact at `path` as loaded now (its modification time), so that
/// [`ArtifactCache::prune`] keeps it. A cache this server cannot write keeps everything.
fn mark_used(path: &Path) {
    let marked = std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(SystemTime::now()));
    if let Err(e) = marked {
        tracing::debug!(path = %path.display(), "cannot mark the compiled runtime as used: {e}");
    }
}

/// The component at `path`, if it is there and usable.
fn cached(engine: &Engine, path: &Path) -> Option<Component> {
    if !path.exists() {
        return None;
    }
    load(engine, path)
        .inspect_err(|e| {
            tracing::warn!(path = %path.display(), "ignoring unusable cached artifact: {e:#}");
        })
        .ok()
}

/// Loads an artifact this cache wrote.
#[expect(
    unsafe_code,
    reason = "deserialising is unsafe because the file must be one wasmtime wrote; \
    only this cache writes there, under a key that includes the engine's compatibility hash"
)]
fn load(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: see the reason above; wasmtime also checks the header's version and config.
    unsafe { Component::deserialize_file(engine, path) }
}

/// SHA-256 as a `Hasher`, so the key does not depend on std's randomised hashing.
#[derive(Default)]
struct StableHasher(Sha256);

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `name` in `dir`, last modified `age` before `now`.
    fn file(dir: &Path, name: &str, now: SystemTime, age: Duration) {
        let path = dir.join(name);
        std::fs::write(&path, b"x").expect("written");
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("opens");
        file.set_modified(now - age).expect("dated");
    }

    #[test]
    fn artifacts_unused_for_two_weeks_are_removed_and_no_others() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        for (name, age) in [
            ("old.cwasm", 15 * day),
            ("old.lock", 15 * day),
            ("recent.cwasm", 13 * day),
            ("ours.cwasm", 100 * day),
            ("being-made.tmp42", 100 * day),
            ("notes.txt", 100 * day),
        ] {
            file(dir.path(), name, now, age);
        }
        ArtifactCache::new(dir.path()).prune(&dir.path().join("ours.cwasm"), now);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("readable")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "being-made.tmp42",
                "notes.txt",
                "ours.cwasm",
                "recent.cwasm"
            ]
        );
    }

    #[test]
    fn loading_an_artifact_marks_it_used() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let now = SystemTime::now();
        file(dir.path(), "a.cwasm", now, Duration::from_secs(30 * 86_400));
        mark_used(&dir.path().join("a.cwasm"));
        let modified = std::fs::metadata(dir.path().join("a.cwasm"))
            .and_then(|m| m.modified())
            .expect("dated");
        assert!(modified >= now, "marked now");
    }
}
