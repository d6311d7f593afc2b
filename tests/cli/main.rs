//! End-to-end tests of the `sluice` binary: one module per area.

mod auth;
mod client;
mod conformance;
mod egress;
mod engine;
mod http;
mod instances;
mod package_matrix;
mod packages;
mod pyo3;
mod reliability;
mod s3;
mod security;
mod server;
mod support;
mod tenants;
mod test_local;
mod tmp;
mod triggers;
mod wal_triggers;
