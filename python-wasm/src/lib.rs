//! `python-runtime.wasm`: CPython 3.14 compiled to WASI with the Sluice plugin API,
//! pre-initialised by componentize-py so that an instance starts with the API and the
//! common standard-library modules already imported.
//!
//! `build.rs` builds it from `guest-sdk/python` against the `python-runtime` world of
//! `guest-sdk/wit`, with the componentize-py version pinned in `COMPONENTIZE_PY_VERSION`
//! (installed into `python-wasm/.venv` on first build). It is rebuilt when those sources
//! change. The bytes are embedded in this crate, so the `sluice` binary needs no file
//! beside it.
//!
//! ```
//! assert_eq!(&sluice_python_wasm::PYTHON_RUNTIME[..4], b"\0asm");
//! assert_eq!(sluice_python_wasm::PYTHON_RUNTIME_SHA256.len(), 64);
//! ```

/// The component, as componentize-py wrote it.
pub static PYTHON_RUNTIME: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/python-runtime.wasm"));

/// The SHA-256 of [`PYTHON_RUNTIME`] in hex, computed at build time: the key under which
/// compiled artifacts of it are cached.
pub const PYTHON_RUNTIME_SHA256: &str = env!("PYTHON_RUNTIME_SHA256");
