//! End-to-end tests of the `sluice` binary: one module per area.

mod client;
mod http;
mod server;
mod support;
mod test_local;
