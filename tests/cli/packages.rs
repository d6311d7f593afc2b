//! `sluice install package`: pip installs pure-Python packages on the server, and
//! plugins import them inside the sandbox.

use crate::server::{TestServer, plugin_dir_with};
use crate::support::text;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const USES_PACKAGE: &str = r#"
import sluicetiny

def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    return sluicetiny.GREETING
"#;

/// A pure-Python wheel of a package `sluicetiny`, built with the zipfile module.
fn tiny_wheel(dir: &Path) -> String {
    let wheel = dir.join("sluicetiny-1.0-py3-none-any.whl");
    let script = r#"
import sys, zipfile
files = {
    "sluicetiny/__init__.py": "GREETING = 'hello from a package'\n",
    "sluicetiny-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: sluicetiny\nVersion: 1.0\n",
    "sluicetiny-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
files["sluicetiny-1.0.dist-info/RECORD"] = "".join(f"{name},,\n" for name in files) + "sluicetiny-1.0.dist-info/RECORD,,\n"
with zipfile.ZipFile(sys.argv[1], "w") as wheel:
    for name, content in files.items():
        wheel.writestr(name, content)
"#;
    let made = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .output()
        .expect("python3 runs");
    assert!(made.status.success(), "{}", text(&made));
    wheel.to_string_lossy().into_owned()
}

fn install(server: &TestServer, args: &[&str]) -> Output {
    server.cli(&[&["install", "package"], args].concat())
}

#[test]
fn plugins_import_packages_installed_on_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = plugin_dir_with(dir.path(), &[("greet.py", USES_PACKAGE)]);
    let wheel = tiny_wheel(dir.path());
    let server = TestServer::start_with(dir.path(), &["--plugin-dir", &plugins.to_string_lossy()]);
    server.create_database("db");
    server.add_trigger("greet", "request:greet", "greet.py", Value::Null, "log");
    let before = server.get("/api/v3/engine/greet", &[]);
    assert_eq!(before.status, 500, "{}", before.text());
    assert!(
        before.text().contains("No module named 'sluicetiny'"),
        "{}",
        before.text()
    );

    let installed = install(&server, &[&wheel]);
    assert!(installed.status.success(), "{}", text(&installed));
    assert!(plugins.join(".packages/sluicetiny/__init__.py").is_file());
    // The trigger's warm instance was loaded before: it is loaded afresh.
    let after = server.get("/api/v3/engine/greet", &[]);
    assert_eq!(
        (after.status, after.text()),
        (200, "hello from a package".to_string())
    );

    let missing = install(
        &server,
        &[&format!(
            "{}/nowhere-1.0-py3-none-any.whl",
            dir.path().display()
        )],
    );
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("400 Bad Request") && text(&missing).contains("nowhere-1.0"),
        "{}",
        text(&missing)
    );
    let option = server.post(
        "/api/v3/configure/plugin_environment/install_packages",
        &[("content-type", "application/json")],
        br#"{"packages": ["--index-url=http://example.com", "x"]}"#,
    );
    assert_eq!(option.status, 400, "{}", option.text());
    assert!(option.text().contains("options cannot be passed to pip"));

    // A requirements file on the server: its packages, never its options.
    let requirements = dir.path().join("requirements.txt");
    std::fs::write(&requirements, format!("# for greet.py\n{wheel}  # local\n")).expect("written");
    let location = requirements.to_string_lossy();
    let installed = install(&server, &["-r", &location]);
    assert!(installed.status.success(), "{}", text(&installed));
    std::fs::write(
        &requirements,
        format!("--index-url http://127.0.0.1:9/\n{wheel}\n"),
    )
    .expect("written");
    let refused = install(&server, &["-r", &location]);
    assert!(
        text(&refused).contains("400 Bad Request")
            && text(&refused).contains("options cannot be passed to pip"),
        "{}",
        text(&refused)
    );
    let missing = install(&server, &["-r", &format!("{location}.missing")]);
    assert!(
        text(&missing).contains("400 Bad Request")
            && text(&missing).contains("cannot read the requirements file"),
        "{}",
        text(&missing)
    );
}

#[test]
fn installs_are_refused_when_the_package_manager_is_disabled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = plugin_dir_with(dir.path(), &[]);
    let server = TestServer::start_with(
        dir.path(),
        &[
            "--plugin-dir",
            &plugins.to_string_lossy(),
            "--package-manager",
            "disabled",
        ],
    );
    let refused = install(&server, &["anything"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("403 Forbidden")
            && text(&refused).contains("Package installation has been disabled"),
        "{}",
        text(&refused)
    );
    assert!(!plugins.join(".packages").exists());
}
