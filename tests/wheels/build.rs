//! Downloads the wheels of `requirements.txt` (pure Python, for the sandbox) and of
//! `native-requirements.txt` (for the machine's Python, the pyo3 runtime's) into the
//! build's output directory, once: the tests install packages from there
//! (`PIP_FIND_LINKS`, `PIP_NO_INDEX`), never from the package index. pip checks each
//! file against its pinned hash.

use std::path::PathBuf;
use std::process::Command;
use std::{env, fs};

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let requirements = crate_dir.join("requirements.txt");
    println!("cargo:rerun-if-changed={}", requirements.display());
    println!("cargo:rerun-if-env-changed=PYTHON");
    let wheels = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("wheels");
    fs::create_dir_all(&wheels).expect("the wheels directory can be made");
    let python = env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let status = Command::new(&python)
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
            "--implementation",
            "py",
            "--abi",
            "none",
            "--platform",
            "any",
            "--python-version",
            "3.14",
            "--dest",
        ])
        .arg(&wheels)
        .arg("-r")
        .arg(&requirements)
        .status()
        .unwrap_or_else(|e| panic!("cannot run `{python} -m pip`: {e}"));
    assert!(
        status.success(),
        "pip could not download the test wheels of {} ({status}): the package index must \
         be reachable for the first build",
        requirements.display()
    );
    println!("cargo:rustc-env=SLUICE_TEST_WHEELS={}", wheels.display());

    let native_requirements = crate_dir.join("native-requirements.txt");
    println!("cargo:rerun-if-changed={}", native_requirements.display());
    let native = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("native-wheels");
    fs::create_dir_all(&native).expect("the wheels directory can be made");
    let status = Command::new(&python)
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
            "--dest",
        ])
        .arg(&native)
        .arg("-r")
        .arg(&native_requirements)
        .status()
        .unwrap_or_else(|e| panic!("cannot run `{python} -m pip`: {e}"));
    assert!(
        status.success(),
        "pip could not download the native test wheels of {} for {python} ({status}): the \
         package index must be reachable for the first build, and {python} one of the \
         versions pinned there",
        native_requirements.display()
    );
    println!(
        "cargo:rustc-env=SLUICE_TEST_NATIVE_WHEELS={}",
        native.display()
    );
}
