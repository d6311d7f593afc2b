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

/// A directory holding pure-Python wheels of a package `sluicetiny`, versions 1.0 (whose
/// `GREETING` is `hello from a package`) and 2.0 (`hello from version 2`), built with the
/// zipfile module: an index for pip (`--find-links`), without the network.
fn tiny_index(dir: &Path) -> String {
    let index = dir.join("index");
    std::fs::create_dir_all(&index).expect("index directory");
    let script = r#"
import sys, zipfile
index, version, greeting = sys.argv[1:]
info = f"sluicetiny-{version}.dist-info"
files = {
    "sluicetiny/__init__.py": f"GREETING = '{greeting}'\n",
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: sluicetiny\nVersion: {version}\n",
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
with zipfile.ZipFile(f"{index}/sluicetiny-{version}-py3-none-any.whl", "w") as wheel:
    for name, content in files.items():
        wheel.writestr(name, content)
"#;
    for (version, greeting) in [
        ("1.0", "hello from a package"),
        ("2.0", "hello from version 2"),
    ] {
        let made = Command::new("python3")
            .args(["-c", script])
            .arg(&index)
            .args([version, greeting])
            .output()
            .expect("python3 runs");
        assert!(made.status.success(), "{}", text(&made));
    }
    index.to_string_lossy().into_owned()
}

/// A server whose plugin directory holds `greet.py`, and whose pip finds packages in
/// [`tiny_index`] only (pip reads its options from the environment too); the plugin
/// directory's path.
fn greeting_server(dir: &Path) -> (TestServer, std::path::PathBuf) {
    let plugins = plugin_dir_with(dir, &[("greet.py", USES_PACKAGE)]);
    let index = tiny_index(dir);
    let server = TestServer::start_with_env(
        dir,
        &["--plugin-dir", &plugins.to_string_lossy()],
        &[("PIP_FIND_LINKS", &index), ("PIP_NO_INDEX", "1")],
    );
    (server, plugins)
}

fn install(server: &TestServer, args: &[&str]) -> Output {
    server.cli(&[&["install", "package"], args].concat())
}

#[test]
fn plugins_import_packages_installed_on_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, plugins) = greeting_server(dir.path());
    let index = dir.path().join("index").to_string_lossy().into_owned();
    server.create_database("db");
    server.add_trigger("greet", "request:greet", "greet.py", Value::Null, "log");
    let before = server.get("/api/v3/engine/greet", &[]);
    assert_eq!(before.status, 500, "{}", before.text());
    assert!(
        before.text().contains("No module named 'sluicetiny'"),
        "{}",
        before.text()
    );

    let installed = install(&server, &["sluicetiny==1.0"]);
    assert!(installed.status.success(), "{}", text(&installed));
    assert!(plugins.join(".packages/sluicetiny/__init__.py").is_file());
    // The trigger's warm instance was loaded before: it is loaded afresh.
    let after = server.get("/api/v3/engine/greet", &[]);
    assert_eq!(
        (after.status, after.text()),
        (200, "hello from a package".to_string())
    );

    let missing = install(&server, &["nowhere"]);
    assert!(
        text(&missing).contains("400 Bad Request") && text(&missing).contains("nowhere"),
        "{}",
        text(&missing)
    );
    // Options, files, directories and URLs are refused before pip runs.
    for (refused, why) in [
        (
            "--index-url=http://example.com",
            "options cannot be passed to pip",
        ),
        (index.as_str(), "not a package name"),
        ("sluicetiny @ file:///tmp/x.whl", "not a package name"),
    ] {
        let body = serde_json::json!({"packages": [refused]}).to_string();
        let answer = server.post(
            "/api/v3/configure/plugin_environment/install_packages",
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(answer.status, 400, "{}", answer.text());
        assert!(answer.text().contains(why), "{}", answer.text());
    }

    // A requirements file in the plugin directory: its packages, never its options or
    // paths.
    let requirements = plugins.join("requirements.txt");
    let location = requirements.to_string_lossy();
    std::fs::write(&requirements, "# for greet.py\nsluicetiny>=1  # local\n").expect("written");
    let installed = install(&server, &["-r", &location]);
    assert!(installed.status.success(), "{}", text(&installed));
    for (file, why) in [
        (
            "--index-url http://127.0.0.1:9/\nsluicetiny\n",
            "options cannot be passed to pip",
        ),
        ("sluicetiny\n./plugin-src\n", "line 2 is not a package name"),
    ] {
        std::fs::write(&requirements, file).expect("written");
        let refused = install(&server, &["-r", &location]);
        assert!(
            text(&refused).contains("400 Bad Request") && text(&refused).contains(why),
            "{}",
            text(&refused)
        );
    }
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

/// An install that does not end (a package index that never answers) is stopped at the
/// server's deadline, so that installs, which run one at a time, are never held for
/// longer; nothing is installed.
#[test]
fn an_install_that_does_not_end_is_stopped_at_its_deadline() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = plugin_dir_with(dir.path(), &[]);
    // A Python whose pip never ends, and says which process it is.
    let stuck = dir.path().join("stuck-python");
    let pids = dir.path().join("pids");
    let script = format!("#!/bin/sh\necho $$ >> {}\nexec sleep 600\n", pids.display());
    std::fs::write(&stuck, script).expect("written");
    std::fs::set_permissions(&stuck, std::fs::Permissions::from_mode(0o755))
        .expect("made executable");
    let server = TestServer::start_with_env(
        dir.path(),
        &[
            "--plugin-dir",
            &plugins.to_string_lossy(),
            "--package-install-timeout",
            "1s",
        ],
        &[("PYTHON", &stuck.to_string_lossy())],
    );
    for package in ["slow-one", "slow-two"] {
        let stopped = install(&server, &[package]);
        assert!(
            text(&stopped).contains("504 Gateway Timeout")
                && text(&stopped).contains(&format!(
                    "installing {package} took longer than 1s (the server's \
                     --package-install-timeout) and was stopped; nothing was installed"
                )),
            "{}",
            text(&stopped)
        );
    }
    let started = std::fs::read_to_string(&pids).expect("pip was started");
    assert_eq!(started.lines().count(), 2, "{started}");
    for pid in started.lines() {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pip {pid} was left running"
        );
    }
    assert!(!plugins.join(".packages").exists());
}

/// Issue 17, point 6: a database token installs into its database's own environment,
/// which its plugins import first; an install is swapped in whole.
#[test]
fn each_database_may_have_its_own_packages_installed_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _) = greeting_server(dir.path());
    let token =
        |name: &str, db: &str| server.create_token(name, &[&format!("db:{db}:read,write,manage")]);
    for db in ["a", "b"] {
        server.create_database(db);
    }
    let (tenant_a, tenant_b) = (token("tenant-a", "a"), token("tenant-b", "b"));
    // Each tenant's trigger, and one of the admin's on a.
    for (db, path, token) in [
        ("a", "a", tenant_a.as_str()),
        ("b", "b", tenant_b.as_str()),
        ("a", "admins", server.token()),
    ] {
        let mut trigger = crate::server::trigger_body(
            path,
            &format!("request:{path}"),
            "greet.py",
            Value::Null,
            "log",
        );
        trigger["db"] = serde_json::json!(db);
        let bearer = format!("Bearer {token}");
        let created = server.send(
            "POST",
            "/api/v3/configure/processing_engine_trigger",
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            trigger.to_string().as_bytes(),
        );
        assert_eq!(created.status, 200, "{}", created.text());
    }
    let as_tenant = |token: &str, args: &[&str]| {
        sluice_with(&server, token, &[&["install", "package"], args].concat())
    };
    let greeting = |db: &str| {
        let answer = server.get(&format!("/api/v3/engine/{db}"), &[]);
        (answer.status, answer.text())
    };

    // The admin's install is everyone's; a's own version comes first for a only.
    assert!(install(&server, &["sluicetiny==1.0"]).status.success());
    let installed = as_tenant(&tenant_a, &["--database", "a", "sluicetiny==2.0"]);
    assert!(installed.status.success(), "{}", text(&installed));
    assert_eq!(greeting("a"), (200, "hello from version 2".to_string()));
    assert_eq!(greeting("b"), (200, "hello from a package".to_string()));
    // The admin's trigger reaches every database: it never imports a tenant's packages.
    assert_eq!(
        greeting("admins"),
        (200, "hello from a package".to_string())
    );

    // A failed install leaves the environment in use as it was.
    let failed = as_tenant(
        &tenant_a,
        &["--database", "a", "sluicetiny==2.0", "nowhere"],
    );
    assert!(
        text(&failed).contains("400 Bad Request"),
        "{}",
        text(&failed)
    );
    assert_eq!(greeting("a"), (200, "hello from version 2".to_string()));

    // Never into the shared environment, nor another database's.
    for args in [
        &["sluicetiny==2.0"][..],
        &["--database", "b", "sluicetiny==2.0"],
    ] {
        let refused = as_tenant(&tenant_a, args);
        assert!(
            text(&refused).contains("403 Forbidden"),
            "{}",
            text(&refused)
        );
    }
    assert_eq!(greeting("b"), (200, "hello from a package".to_string()));
    // Its quota of package bytes, beyond which nothing is installed.
    let package_quota = |bytes: &str| {
        let set = server.cli(&[
            "update",
            "database",
            "-d",
            "b",
            "--max-package-bytes",
            bytes,
        ]);
        assert!(set.status.success(), "{}", text(&set));
    };
    package_quota("100");
    let over = as_tenant(&tenant_b, &["--database", "b", "sluicetiny==2.0"]);
    assert!(
        text(&over).contains("403 Forbidden")
            && text(&over).contains("max-package-bytes quota is 100"),
        "{}",
        text(&over)
    );
    assert_eq!(greeting("b"), (200, "hello from a package".to_string()));
    package_quota("1000000");
    let own = as_tenant(&tenant_b, &["--database", "b", "sluicetiny==2.0"]);
    assert!(own.status.success(), "{}", text(&own));
    assert_eq!(greeting("b"), (200, "hello from version 2".to_string()));
}

/// `sluice ARGS --host … --token TOKEN`.
fn sluice_with(server: &TestServer, token: &str, args: &[&str]) -> Output {
    crate::support::sluice()
        .args(args)
        .args(["--host", &server.url(), "--token", token])
        .output()
        .expect("sluice runs")
}
