//! Widely used pure-Python packages install with `sluice install package` and work in a
//! plugin (issue 20): each is imported and called inside the sandbox, so that the next
//! POSIX call WASI lacks (as `os.getuid` was for pint) shows up here first. The wheels
//! come from `tests/wheels` (downloaded, hash-checked, by its build), never from the
//! package index while the tests run.

use crate::server::{TestServer, plugin_dir_with};
use crate::support::{root, text};
use serde_json::{Value, json};

/// Each package of the list, and what the plugin's check of it answers.
const WORKING: &[(&str, &str)] = &[
    ("requests", "http://example.com/?a=1"),
    ("urllib3", "8443"),
    ("pint", "300.0 centimeter"),
    ("faker", "str"),
    ("python-dateutil", "2027-01-06T10:00:00+00:00"),
    ("pytz", "2:00:00"),
    ("tzdata", "-1 day, 19:00:00"),
    ("humanize", "1.0 MB"),
    ("packaging", "True"),
    ("attrs", "Point(x=1)"),
    ("tomli", "{'a': 1}"),
    ("influxdata-plugin-utils", "0:05:00"),
    // Besides the list: used by the official library's plugins.
    ("httpx", "http://example.com?a=1"),
    ("jmespath", "2"),
];

/// Packages of the list that cannot be had in the sandbox, and why: they publish no
/// pure-Python wheel, and the server builds nothing from source (a build runs the
/// package's code on the server, outside the sandbox).
const NATIVE_ONLY: &[(&str, &str)] = &[
    // PyYAML's pure-Python mode exists only when built from its source.
    ("PyYAML", "No matching distribution found for PyYAML"),
    // Jinja2 is pure, but needs MarkupSafe, which publishes native wheels only.
    ("Jinja2", "MarkupSafe"),
];

#[test]
fn widely_used_pure_python_packages_install_and_work_in_a_plugin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = std::fs::read_to_string(root().join("tests/plugins/packages/uses_packages.py"))
        .expect("test plugin");
    let plugins = plugin_dir_with(dir.path(), &[("uses_packages.py", &plugin)]);
    let server = TestServer::start_with_env(
        dir.path(),
        &["--plugin-dir", &plugins.to_string_lossy()],
        &[
            ("PIP_FIND_LINKS", sluice_test_wheels::WHEELS_DIR),
            ("PIP_NO_INDEX", "1"),
        ],
    );
    server.create_database("db");
    let mut trigger = crate::server::trigger_body(
        "uses",
        "request:uses",
        "uses_packages.py",
        Value::Null,
        "log",
    );
    // pint reads its unit definitions on first use: more than a trivial call's budget.
    trigger["limits"] = json!({"cpu_time": "60s", "wall_time": "60s"});
    assert_eq!(server.create_trigger(&trigger).status, 200);

    let names: Vec<&str> = WORKING.iter().map(|(name, _)| *name).collect();
    let installed = server.cli(&[&["install", "package"], names.as_slice()].concat());
    assert!(installed.status.success(), "{}", text(&installed));

    let mut failures = Vec::new();
    for (package, wanted) in WORKING {
        let response = server.get(&format!("/api/v3/engine/uses?package={package}"), &[]);
        let answer = if response.status == 200 {
            response.json()
        } else {
            json!({"error": response.text()})
        };
        if answer != json!({"ok": wanted}) {
            failures.push(format!("{package}: {answer}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    for (package, why) in NATIVE_ONLY {
        let refused = server.cli(&["install", "package", package]);
        assert!(
            !refused.status.success() && text(&refused).contains(why),
            "{package}: {}",
            text(&refused)
        );
    }
}
