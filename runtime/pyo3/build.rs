//! Links the machine's libpython (found by pyo3 as usual: `python3` on the path, or
//! `PYO3_PYTHON`) with its directory as the run-time search path, and records where that
//! Python's standard library is, which the runtime checks for before starting it.

use std::process::Command;

fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    let config = pyo3_build_config::get();
    // Said before the linker says `cannot find -lpython3.X`.
    if let (true, Some(dir), Some(name)) = (config.shared(), config.lib_dir(), config.lib_name()) {
        let library = std::path::Path::new(dir).join(format!("lib{name}.so"));
        assert!(
            library.exists(),
            "the pyo3 runtime links {}, which this machine lacks: install Python's shared \
             library (Debian: `apt install python3-dev`; pyenv: a Python built with \
             PYTHON_CONFIGURE_OPTS=--enable-shared), point PYO3_PYTHON at a Python that has \
             it, or build without the runtime (`cargo build --no-default-features`)",
            library.display()
        );
    }
    println!("cargo:rustc-env=SLUICE_PYTHON_VERSION={}", config.version());
    let Some(python) = config.executable() else {
        println!("cargo:rustc-env=SLUICE_PYTHON_STDLIB=");
        println!("cargo:rustc-env=SLUICE_PYTHON_EXECUTABLE=python3");
        return;
    };
    println!("cargo:rustc-env=SLUICE_PYTHON_EXECUTABLE={python}");
    let stdlib = Command::new(python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('stdlib'), end='')",
        ])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default();
    println!("cargo:rustc-env=SLUICE_PYTHON_STDLIB={stdlib}");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
