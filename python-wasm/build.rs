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
    let workspace = crate_dir
        .parent()
        .expect("python-wasm sits in the workspace root");
    let guest_python = workspace.join("guest-sdk/python");
    let wit = workspace.join("guest-sdk/wit");
    let pinned_file = crate_dir.join("COMPONENTIZE_PY_VERSION");
    for watched in [&guest_python, &wit, &pinned_file] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    println!("cargo:rerun-if-env-changed=COMPONENTIZE_PY");

    let pinned = fs::read_to_string(&pinned_file).expect("COMPONENTIZE_PY_VERSION is readable");
    let mut componentize = match env::var_os("COMPONENTIZE_PY") {
        Some(path) => Command::new(path),
        None => componentize_py(&crate_dir.join(".venv"), pinned.trim()),
    };

    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("python-runtime.wasm");
    // No .pyc files in the source tree: they would make cargo rebuild the runtime.
    let status = componentize
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("--quiet")
        .arg("-d")
        .arg(&wit)
        .args(["-w", "python-runtime", "componentize", "-p"])
        .arg(&guest_python)
        .arg("app")
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run componentize-py: {e}"));
    assert!(
        status.success(),
        "componentize-py failed to build python-runtime.wasm ({status})"
    );

    let bytes = fs::read(&out).expect("componentize-py wrote the component");
    println!(
        "cargo:rustc-env=PYTHON_RUNTIME_SHA256={}",
        hex::encode(Sha256::digest(&bytes))
    );
}

/// A command running the pinned componentize-py, installed from the package index on
/// first use: into a virtual environment at `venv`, or, where Python has no `venv`
/// module, into `venv/site` with `pip install --target`.
fn componentize_py(venv: &Path, pinned: &str) -> Command {
    let wanted = format!("componentize-py {pinned}");
    let python = env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let site = venv.join("site");
    let candidates = [venv_command(venv), target_command(&python, &site)];
    for candidate in candidates {
        if version_of(candidate()).as_deref() == Some(wanted.as_str()) {
            return candidate();
        }
    }
    println!("cargo:warning=installing componentize-py {pinned} from the Python package index");
    let requirement = format!("componentize-py=={pinned}");
    let venv_made = Command::new(&python)
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .is_ok_and(|s| s.success());
    if venv_made {
        run(Command::new(venv.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &requirement,
        ]));
        return venv_command(venv)();
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--upgrade",
            "--target",
        ])
        .arg(&site)
        .arg(&requirement));
    target_command(&python, &site)()
}

fn venv_command(venv: &Path) -> Box<dyn Fn() -> Command> {
    let binary = venv.join("bin/componentize-py");
    Box::new(move || Command::new(&binary))
}

fn target_command(python: &str, site: &Path) -> Box<dyn Fn() -> Command> {
    let python = python.to_string();
    let site = site.to_path_buf();
    Box::new(move || {
        let mut command = Command::new(&python);
        command.env("PYTHONPATH", &site).args([
            "-c",
            "import sys; from componentize_py import script; sys.exit(script())",
        ]);
        command
    })
}

fn version_of(mut command: Command) -> Option<String> {
    let output = command.arg("--version").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn run(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(status.success(), "{command:?} failed ({status})");
}
