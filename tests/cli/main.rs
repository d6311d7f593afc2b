//! End-to-end tests of the `sluice` binary: one module per command family.

mod support;
mod test_local;
