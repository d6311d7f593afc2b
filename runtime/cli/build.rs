//! With the pyo3 runtime, the `sluice` binary finds the machine's libpython in its own
//! directory when it starts.

fn main() {
    #[cfg(feature = "pyo3")]
    pyo3_build_config::add_libpython_rpath_link_args();
}
