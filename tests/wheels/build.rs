//! Downloads the wheels of `requirements.txt` (pure Python, for the sandbox) and of
//! `native-requirements.txt` (for the machine's Python, the pyo3 runtime's) into the
//! build's output directory, once: the tests install packages from there
//! (`PIP_FIND_LINKS`, `PIP_NO_INDEX`), never from the package index. pip checks each
//! file against its pinned hash.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-env-changed=PYTHON");
    let python = env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    // For the sandbox's CPython, whatever the machine's: pure Python only.
    let sandbox = [
        "--implementation",
        "py",
        "--abi",
        "none",
        "--platform",
        "any",
        "--python-version",
        "3.14",
    ];
    let wheels = download(
        &python,
        &crate_dir.join("requirements.txt"),
        &out_dir.join("wheels"),
        &sandbox,
    );
    println!("cargo:rustc-env=SLUICE_TEST_WHEELS={}", wheels.display());
    // For the machine's Python, the one the pyo3 runtime links.
    let native = download(
        &python,
        &crate_dir.join("native-requirements.txt"),
        &out_dir.join("native-wheels"),
        &[],
    );
    println!(
        "cargo:rustc-env=SLUICE_TEST_NATIVE_WHEELS={}",
        native.display()
    );
}

/// Downloads the wheels `requirements` pins (`--only-binary`, `--no-deps`, checked
/// against their hashes) into `dest`, choosing them with `choice`; returns `dest`.
fn download(python: &str, requirements: &Path, dest: &Path, choice: &[&str]) -> PathBuf {
    println!("cargo:rerun-if-changed={}", requirements.display());
    fs::create_dir_all(dest).expect("the wheels directory can be made");
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--no-deps",
            "--require-hashes",
            "--only-binary=:all:",
        ])
        .args(choice)
        .arg("--dest")
        .arg(dest)
        .arg("-r")
        .arg(requirements)
        .status()
        .unwrap_or_else(|e| panic!("cannot run `{python} -m pip`: {e}"));
    assert!(
        status.success(),
        "pip could not download the test wheels of {} ({status}): the package index must \
         be reachable for the first build, and the wheels pinned there must fit {python}",
        requirements.display()
    );
    dest.to_path_buf()
}
