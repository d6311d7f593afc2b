//! Loading plugins: files, packages, and every way loading can fail.

use crate::support::*;
use sluice_plugin_api::{InvocationError, Limits};

async fn first_error(plugin: &sluice_plugin_api::PluginRef) -> String {
    let report = wal(plugin, "m f=1i").await;
    assert_eq!(report.errors.len(), 1, "{report:?}");
    report.errors[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn syntax_errors_name_the_file_and_line() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "broken.py",
        "def process_writes(api, b, args=None):\n    pass\n  oops = 1\n",
    );
    assert_eq!(
        first_error(&plugin).await,
        "error executing plugin: IndentationError: unindent does not match any outer indentation level (broken.py, line 3)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exceptions_name_the_innermost_plugin_line() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "raises.py",
        "def helper():\n    raise ValueError('bad value')\n\ndef process_writes(api, b, args=None):\n    helper()\n",
    );
    assert_eq!(
        first_error(&plugin).await,
        "error executing plugin: ValueError: bad value (raises.py, line 2)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_entry_points_and_wrong_signatures_use_upstream_messages() {
    let dir = PluginDir::new();
    let missing = dir.plugin("missing.py", "def something_else():\n    pass\n");
    assert_eq!(
        first_error(&missing).await,
        "error executing plugin: the process_writes function is not present in the plugin. \
         Should be defined as: process_writes(influxdb3_local, table_batches, args=None)"
    );
    let wrong = dir.plugin(
        "wrong.py",
        "def process_writes(influxdb3_local, table_batches):\n    pass\n",
    );
    assert_eq!(
        first_error(&wrong).await,
        "error executing plugin: TypeError: process_writes() takes 2 positional arguments but 3 were given"
    );
    let line = dir.plugin(
        "line.py",
        "def process_writes(api, b, args=None):\n    api.write(LineBuilder('some_table'))\n",
    );
    assert!(first_error(&line).await.starts_with(
        "error executing plugin: InvalidLineError: At least one field is required: some_table"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_plugin_files_get_clear_errors() {
    let dir = PluginDir::new();
    std::fs::write(dir.path().join("latin1.py"), b"x = '\xe9'\n").expect("write");
    let cases = [
        ("nowhere.py", "Plugin not found: nowhere.py"),
        (
            "../outside.py",
            "Path traversal detected: plugin filename '../outside.py' attempts to access files outside the plugin directory",
        ),
        (
            "/etc/passwd",
            "Path traversal detected: plugin filename '/etc/passwd' attempts to access files outside the plugin directory",
        ),
    ];
    for (name, expected) in cases {
        assert_eq!(
            first_error(&dir.reference(name)).await,
            format!("error executing plugin: {expected}")
        );
    }
    assert!(
        first_error(&dir.reference("latin1.py"))
            .await
            .contains("latin1.py is not valid UTF-8")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn packages_with_relative_imports_load_once_and_keep_state() {
    let dir = PluginDir::new();
    dir.file("counter_pkg/__init__.py", "from .counting import bump\n\ndef process_writes(api, batches, args=None):\n    api.info('count', bump())\n");
    dir.file(
        "counter_pkg/counting.py",
        "calls = 0\n\ndef bump():\n    global calls\n    calls += 1\n    return calls\n",
    );
    let plugin = dir.reference("counter_pkg");
    let mut instance = sandbox()
        .instantiate(&plugin, &Limits::default())
        .await
        .expect("loads");
    for expected in ["INFO: count 1", "INFO: count 2", "INFO: count 3"] {
        let host = host();
        instance
            .call(
                writes_call("m f=1i", None),
                &Limits::default(),
                host.clone(),
            )
            .await
            .expect("runs");
        assert_eq!(host.log_lines(), vec![expected.to_string()]);
    }
    // A fresh instance starts from scratch.
    assert_eq!(
        wal(&plugin, "m f=1i").await.log_lines,
        vec!["INFO: count 1".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn single_file_plugins_get_fresh_globals_on_every_call() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "fresh.py",
        "calls = []\n\ndef process_writes(api, batches, args=None):\n    calls.append(1)\n    api.info(len(calls), __name__)\n",
    );
    let mut instance = sandbox()
        .instantiate(&plugin, &Limits::default())
        .await
        .expect("loads");
    for _ in 0..3 {
        let host = host();
        instance
            .call(
                writes_call("m f=1i", None),
                &Limits::default(),
                host.clone(),
            )
            .await
            .expect("runs");
        assert_eq!(host.log_lines(), vec!["INFO: 1 fresh".to_string()]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_package_that_fails_to_import_says_so() {
    let dir = PluginDir::new();
    dir.file("bad_pkg/__init__.py", "import does_not_exist\n");
    let error = first_error(&dir.reference("bad_pkg")).await;
    assert!(
        error.starts_with("error executing plugin: Failed to import plugin module 'bad_pkg': ModuleNotFoundError: No module named 'does_not_exist'"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poisoned_instance_refuses_further_calls() {
    let dir = PluginDir::new();
    let plugin = dir.plugin(
        "spin.py",
        "def process_writes(api, b, args=None):\n    while True: pass\n",
    );
    let limits = Limits {
        cpu_time: std::time::Duration::from_millis(50),
        ..Limits::default()
    };
    let mut instance = sandbox()
        .instantiate(&plugin, &limits)
        .await
        .expect("loads");
    let first = instance
        .call(writes_call("m f=1i", None), &limits, host())
        .await;
    assert!(
        matches!(first, Err(InvocationError::Limit { .. })),
        "{first:?}"
    );
    assert!(instance.is_poisoned());
    let second = instance
        .call(writes_call("m f=1i", None), &limits, host())
        .await;
    assert!(
        matches!(second, Err(InvocationError::Internal(_))),
        "{second:?}"
    );
}
