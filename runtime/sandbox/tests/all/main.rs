//! Integration tests of the sandbox: one binary, one module per area. Every test runs
//! real plugins in the real Python runtime under wasmtime.

mod compiled_code;
mod hostile;
mod loading;
mod pages_mapped_ahead;
mod python_api;
mod requests;
mod reused_slots;
mod spares;
mod stdlib;
mod support;
mod tmp;
