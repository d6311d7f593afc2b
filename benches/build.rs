//! The bench binaries find the machine's libpython (the pyo3 runtime's) when they start.

fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
