//! End-to-end tests of the `sluice` binary: one module per area.

mod http;
mod server;
mod support;
mod test_local;
