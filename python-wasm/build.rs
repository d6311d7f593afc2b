//! Builds `python-runtime.wasm` with a pinned componentize-py.
//!
//! componentize-py comes from the Python package index into `python-wasm/.venv`, so a
//! machine needs only Python 3 with pip. Set `COMPONENTIZE_PY` to use another binary.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = crate_dir.parent().expect("python-wasm sits in the workspace root");
    let guest_python = workspace.join("guest-sdk/python");
    let wit = workspace.join("guest-sdk/wit");
    let pinned_file = crate_dir.join("COMPONENTIZE_PY_VERSION");
    for watched in [&guest_python, &wit, &pinned_file] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    println!("cargo:rerun-if-env-changed=COMPONENTIZE_PY");

    let pinned = fs::read_to_string(&pinned_file).expect("COMPONENTIZE_PY_VERSION is readable");
    let componentize = match env::var_os("COMPONENTIZE_PY") {
        Some(path) => PathBuf::from(path),
        None => ensure_componentize_py(&crate_dir.join(".venv"), pinned.trim()),
    };

    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("python-runtime.wasm");
    let status = Command::new(&componentize)
        .arg("--quiet")
        .arg("-d")
        .arg(&wit)
        .args(["-w", "python-runtime", "componentize", "-p"])
        .arg(&guest_python)
        .arg("app")
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", componentize.display()));
    assert!(status.success(), "componentize-py failed to build python-runtime.wasm ({status})");

    let bytes = fs::read(&out).expect("componentize-py wrote the component");
    println!("cargo:rustc-env=PYTHON_RUNTIME_SHA256={}", hex::encode(Sha256::digest(&bytes)));
}

/// Returns the venv's componentize-py, installing the pinned version when it is missing
/// or different.
fn ensure_componentize_py(venv: &Path, pinned: &str) -> PathBuf {
    let binary = venv.join("bin/componentize-py");
    let installed = Command::new(&binary)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if installed.as_deref() == Some(&format!("componentize-py {pinned}")) {
        return binary;
    }
    println!("cargo:warning=installing componentize-py {pinned} into {}", venv.display());
    let python = env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    run(Command::new(&python).args(["-m", "venv"]).arg(venv));
    run(Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("componentize-py=={pinned}")));
    binary
}

fn run(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(status.success(), "{command:?} failed ({status})");
}
