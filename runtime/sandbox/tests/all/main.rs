//! Integration tests of the sandbox: one binary, one module per area. Every test runs
//! real plugins in the real Python runtime under wasmtime.

mod hostile;
mod loading;
mod python_api;
mod requests;
mod spares;
mod stdlib;
mod support;
mod tmp;
