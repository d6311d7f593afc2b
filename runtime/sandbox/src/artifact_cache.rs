//! Compiled components, cached on disk.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
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
    pub fn load_or_make(
        &self,
        engine: &Engine,
        wasm_sha256: &str,
        make: impl FnOnce() -> wasmtime::Result<Vec<u8>>,
    ) -> wasmtime::Result<Component> {
        let path = self.path_for(engine, wasm_sha256);
        if let Some(component) = cached(engine, &path) {
            return Ok(component);
        }
        std::fs::create_dir_all(&self.dir)?;
        let lock = std::fs::File::create(path.with_extension("lock"))?;
        // Released when `lock` drops, or when the process ends, however it ends.
        lock.lock()?;
        if let Some(component) = cached(engine, &path) {
            return Ok(component);
        }
        let wasm = make()?;
        tracing::info!(
            "compiling the Python runtime ({} MB); this happens once per version",
            wasm.len() >> 20
        );
        let component = Component::new(engine, &wasm)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), "cannot cache the compiled runtime: {e:#}");
        }
        Ok(component)
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
