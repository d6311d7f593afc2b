//! Hashes how the sandbox makes the Python runtime (`src/python/`, the WIT world it
//! targets): part of the key the made runtime is cached under, so that a change to the
//! recipe never loads a runtime made by the old one.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let mut files = vec![
        dir.join("src/python.rs"),
        dir.join("../../guest-sdk/wit/runtime.wit"),
    ];
    files.extend(rust_files(&dir.join("src/python")));
    files.sort();
    let mut digest = Sha256::new();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        digest.update(Sha256::digest(&bytes));
    }
    println!(
        "cargo:rerun-if-changed={}",
        dir.join("src/python").display()
    );
    println!(
        "cargo:rustc-env=PYTHON_RECIPE_SHA256={}",
        hex::encode(digest.finalize())
    );
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect()
}
