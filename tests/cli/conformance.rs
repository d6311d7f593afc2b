//! Upstream's end-to-end scenarios for the processing engine (its `tests/cli` suite),
//! against the real server and CLI, asserting the outputs upstream's tests expect. Where
//! Sluice differs on purpose, the assertion says so.
//!
//! Each scenario that runs plugins runs twice: in the sandbox, and on the pyo3 runtime
//! ([`on_runtime`]), where the same outputs are expected.

use crate::server::TestServer;
use crate::support::{sluice, text};
use serde_json::{Value, json};
use std::cell::Cell;
use std::path::Path;
use std::process::Output;

/// Upstream's `WRITE_REPORTS_PLUGIN_CODE`: one `write_reports` row per table of each
/// flush, with the count doubled for the table named by `double_count_table`.
const WRITE_REPORTS: &str = r#"
def process_writes(influxdb3_local, table_batches, args=None):
    for table_batch in table_batches:
        table_name = table_batch["table_name"]
        if table_name == "write_reports":
            continue
        row_count = len(table_batch["rows"])
        if args and args.get("double_count_table") == table_name:
            row_count *= 2
        line = LineBuilder("write_reports").tag("table_name", table_name).int64_field("row_count", row_count)
        influxdb3_local.write(line)
"#;

/// The plugin of upstream's `test_wal_plugin_test`.
const WAL_TEST: &str = r#"
def process_writes(influxdb3_local, table_batches, args=None):
    influxdb3_local.info("arg1: " + args["arg1"])
    query_params = {"host": args["host"]}
    query_result = influxdb3_local.query("SELECT host, region, usage FROM cpu where host = $host", query_params)
    influxdb3_local.info("query result: " + str(query_result))
    influxdb3_local.info("i", query_result, args["host"])
    influxdb3_local.warn("w:", query_result)
    influxdb3_local.error("err", query_result)
    for table_batch in table_batches:
        influxdb3_local.info("table: " + table_batch["table_name"])
        for row in table_batch["rows"]:
            influxdb3_local.info("row: " + str(row))
    line = LineBuilder("some_table").tag("tag1", "tag1_value").tag("tag2", "tag2_value").int64_field("field1", 1).float64_field("field2", 2.0).string_field("field3", "number three")
    influxdb3_local.write(line)
    other_line = LineBuilder("other_table").int64_field("other_field", 1).float64_field("other_field2", 3.14).time_ns(1302)
    influxdb3_local.write_to_db("mytestdb", other_line)
    influxdb3_local.info("done")
"#;

/// The plugin of upstream's `test_schedule_plugin_test`.
const SCHEDULE_TEST: &str = r#"
def process_scheduled_call(influxdb3_local, call_time, args=None):
    influxdb3_local.info(f"args are {args}")
    influxdb3_local.info("Successfully called")
"#;

thread_local! {
    /// What runs the plugins of the scenario on this thread: `wasm` or `pyo3`.
    static RUNTIME: Cell<&'static str> = const { Cell::new("wasm") };
}

/// Runs `scenario` with its triggers and test runs on `runtime`: its servers run it, and
/// the commands that create triggers or run tests ask for it ([`client`]).
fn on_runtime(runtime: &'static str, scenario: fn()) {
    RUNTIME.set(runtime);
    scenario();
}

/// `sluice serve` on `data_dir` with `flags`, running the scenario's runtime.
fn start_server(data_dir: &Path, flags: &[&str]) -> TestServer {
    let mut flags = flags.to_vec();
    if RUNTIME.get() != "wasm" {
        flags.extend(["--plugin-runtimes", "wasm,pyo3"]);
    }
    TestServer::start_with(data_dir, &flags)
}

fn run(args: &[&str]) -> Output {
    sluice().args(args).output().expect("sluice runs")
}

fn succeeded(output: &Output) -> String {
    assert!(output.status.success(), "{}", text(output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn failed(output: &Output) -> String {
    assert!(!output.status.success(), "{}", text(output));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Polls `sql` on `db` until it returns `expected` (plugin writes are asynchronous).
fn wait_for_rows(server: &TestServer, db: &str, sql: &str, expected: &Value) {
    server.eventually(db, sql, |rows| rows == expected);
}

/// The flags every client command needs to reach `server` with its admin token.
fn client_flags(server: &TestServer) -> [String; 4] {
    [
        "--host".into(),
        server.url(),
        "--token".into(),
        server.token().into(),
    ]
}

/// `sluice ARGS… --host URL --token T`.
/// `sluice ARGS…` against `server`; a trigger created, or a test run, on the scenario's
/// runtime.
fn client(server: &TestServer, args: &[&str]) -> Output {
    let flags = client_flags(server);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(flags.iter().map(String::as_str));
    if matches!(args, ["create", "trigger", ..] | ["test", ..]) {
        all.extend(["--runtime", RUNTIME.get()]);
    }
    run(&all)
}

/// `sluice create trigger -d db --trigger-spec SPEC --path PATH EXTRA… NAME` on `server`.
fn create_trigger(
    server: &TestServer,
    name: &str,
    spec: &str,
    path: &str,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "create",
        "trigger",
        "-d",
        "db",
        "--trigger-spec",
        spec,
        "--path",
        path,
    ];
    args.extend(extra);
    args.push(name);
    client(server, &args)
}

/// Upstream's write of `test_create_trigger_and_run`, and the `write_reports` rows its
/// trigger (`WRITE_REPORTS` with `double_count_table=cpu`) must produce.
fn write_and_expect_reports(server: &TestServer) {
    let written = server.post(
        "/api/v3/write_lp?db=db",
        &[],
        b"cpu,host=a f1=1.0\ncpu,host=b f1=2.0\nmem,host=a usage=234",
    );
    assert_eq!(written.status, 204, "{}", written.text());
    wait_for_rows(
        server,
        "db",
        "SELECT table_name, row_count FROM write_reports ORDER BY table_name",
        &json!([{"table_name":"cpu","row_count":4},{"table_name":"mem","row_count":1}]),
    );
}

/// A server whose `--plugin-dir` is `plugin_dir`.
fn start_with_plugin_dir(data_dir: &Path, plugin_dir: &Path) -> TestServer {
    start_server(
        data_dir,
        &["--plugin-dir", plugin_dir.to_str().expect("utf-8")],
    )
}

/// Writes the three `cpu` rows of upstream's plugin tests to `foo`, then `more` lines.
fn write_cpu_rows(server: &TestServer, more: &str) {
    let body = format!(
        "cpu,host=s1,region=us-west usage=0.9\ncpu,host=s2,region=us-east usage=0.89\ncpu,host=s3,region=us-east usage=0.5{more}"
    );
    let written = server.post("/api/v3/write_lp?db=foo", &[], body.as_bytes());
    assert_eq!(written.status, 204, "{}", written.text());
}

fn write_package(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("dirs");
        std::fs::write(path, content).expect("written");
    }
}

fn engine_json(server: &TestServer, path: &str) -> Value {
    let response = server.get(&format!("/api/v3/engine/{path}"), &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

#[test]
fn uploaded_and_updated_plugins_run_and_are_listed() {
    on_runtime("wasm", uploaded_and_updated_plugins);
}

#[test]
fn uploaded_and_updated_plugins_run_and_are_listed_on_pyo3() {
    on_runtime("pyo3", uploaded_and_updated_plugins);
}

fn uploaded_and_updated_plugins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = dir.path().join("plugins");
    let local = dir.path().join("local");
    let server = start_with_plugin_dir(dir.path(), &plugin_dir);
    server.create_database("db");
    let local_str = |name: &str| local.join(name).to_string_lossy().into_owned();

    // test_create_trigger_with_upload: a file from another directory.
    write_package(&local, &[("reports.py", WRITE_REPORTS)]);
    let created = create_trigger(
        &server,
        "reports",
        "all_tables",
        &local_str("reports.py"),
        &["--upload", "--trigger-arguments", "double_count_table=cpu"],
    );
    assert_eq!(
        succeeded(&created).trim(),
        "Trigger reports created successfully"
    );
    assert!(plugin_dir.join("reports.py").is_file());
    write_and_expect_reports(&server);

    // test_upload_plugin_file_not_found.
    let missing = create_trigger(
        &server,
        "nothing",
        "request:nothing",
        &local_str("missing.py"),
        &["--upload"],
    );
    assert!(failed(&missing).contains("File not found"));

    // test_upload_plugin_file_collision: the same base name overwrites; only the base
    // name is used.
    write_package(
        &local,
        &[(
            "v1/echo.py",
            "def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):\n    return {'v': 1}\n",
        )],
    );
    write_package(
        &local,
        &[(
            "v2/echo.py",
            "def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):\n    return {'v': 2}\n",
        )],
    );
    for (version, trigger) in [("v1", "echo1"), ("v2", "echo2")] {
        let created = create_trigger(
            &server,
            trigger,
            &format!("request:{trigger}"),
            &local_str(&format!("{version}/echo.py")),
            &["--upload"],
        );
        succeeded(&created);
    }
    assert!(
        std::fs::read_to_string(plugin_dir.join("echo.py"))
            .expect("uploaded")
            .contains("'v': 2")
    );
    assert_eq!(engine_json(&server, "echo1"), json!({"v": 2}));

    // test_update_trigger: a single file replaced in place, used from the next call.
    write_package(
        &local,
        &[(
            "v3.py",
            "def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):\n    return {'v': 3}\n",
        )],
    );
    let updated = client(
        &server,
        &[
            "update",
            "trigger",
            "-d",
            "db",
            "-t",
            "echo2",
            "-p",
            &local_str("v3.py"),
        ],
    );
    assert_eq!(
        succeeded(&updated).trim(),
        "Trigger 'echo2' updated successfully"
    );
    assert_eq!(engine_json(&server, "echo2"), json!({"v": 3}));

    // test_upload_multifile_plugin_on_create (nested), listed in system.plugin_files.
    write_package(
        &local,
        &[
            (
                "pkg/__init__.py",
                "from .utils import answer\nfrom .models.processor import kind\n\ndef process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):\n    return {'answer': answer(), 'kind': kind()}\n",
            ),
            ("pkg/utils.py", "def answer():\n    return 42\n"),
            ("pkg/models/__init__.py", ""),
            (
                "pkg/models/processor.py",
                "def kind():\n    return 'first'\n",
            ),
            (
                "pkg/__pycache__/stale.py",
                "raise Exception('never uploaded')\n",
            ),
        ],
    );
    let created = create_trigger(
        &server,
        "pkg",
        "request:pkg",
        &local_str("pkg"),
        &["--upload"],
    );
    succeeded(&created);
    assert!(!plugin_dir.join("pkg/__pycache__/stale.py").exists());
    assert_eq!(
        engine_json(&server, "pkg"),
        json!({"answer": 42, "kind": "first"})
    );
    assert_eq!(
        server.query(
            "db",
            "SELECT file_name, file_path FROM system.plugin_files WHERE plugin_name = 'pkg' ORDER BY file_name"
        ),
        json!([
            {"file_name": "__init__.py", "file_path": "pkg/__init__.py"},
            {"file_name": "models/__init__.py", "file_path": "pkg/models/__init__.py"},
            {"file_name": "models/processor.py", "file_path": "pkg/models/processor.py"},
            {"file_name": "utils.py", "file_path": "pkg/utils.py"},
        ])
    );

    // test_upload_multifile_plugin_missing_init_fails.
    write_package(&local, &[("noinit/utils.py", "x = 1\n")]);
    let refused = create_trigger(
        &server,
        "noinit",
        "request:noinit",
        &local_str("noinit"),
        &["--upload"],
    );
    assert!(failed(&refused).contains("__init__.py"));

    // test_update_multifile_plugin: the package is replaced as a whole.
    write_package(
        &local,
        &[
            (
                "pkg2/__init__.py",
                "from .models.processor import kind\n\ndef process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):\n    return {'kind': kind()}\n",
            ),
            ("pkg2/models/__init__.py", ""),
            (
                "pkg2/models/processor.py",
                "def kind():\n    return 'second'\n",
            ),
        ],
    );
    let updated = client(
        &server,
        &[
            "update",
            "trigger",
            "-d",
            "db",
            "-t",
            "pkg",
            "-p",
            &local_str("pkg2"),
        ],
    );
    assert_eq!(
        succeeded(&updated).trim(),
        "Trigger 'pkg' updated successfully (atomic directory replacement)"
    );
    assert_eq!(engine_json(&server, "pkg"), json!({"kind": "second"}));
    assert!(!plugin_dir.join("pkg/utils.py").exists());

    // test_show_plugins: every trigger's files, from `_internal`, with upstream's header.
    let shown = client(&server, &["show", "plugins", "--format", "csv"]);
    let csv = succeeded(&shown);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("plugin_name,file_name,file_path,size_bytes,last_modified")
    );
    let plugins: Vec<String> = lines
        .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(
        plugins,
        [
            "echo1,echo.py",
            "echo2,echo.py",
            "pkg,__init__.py",
            "pkg,models/__init__.py",
            "pkg,models/processor.py",
            "reports,reports.py",
        ]
    );

    // test_system_plugins_table_after_delete.
    let deleted = client(
        &server,
        &["delete", "trigger", "-d", "db", "--force", "pkg"],
    );
    assert_eq!(
        succeeded(&deleted).trim(),
        "Trigger pkg deleted successfully"
    );
    assert_eq!(
        server.query(
            "db",
            "SELECT count(*) AS n FROM system.plugin_files WHERE plugin_name = 'pkg'"
        ),
        json!([{"n": 0}])
    );

    // Updating a trigger that does not exist, and path traversal in an upload.
    let unknown = client(
        &server,
        &[
            "update",
            "trigger",
            "-d",
            "db",
            "-t",
            "ghost",
            "-p",
            &local_str("v3.py"),
        ],
    );
    assert!(failed(&unknown).contains("Plugin not found: ghost"));
    let traversal = server.post(
        "/api/v3/plugins/files",
        &[("content-type", "application/json")],
        json!({"plugin_name": "../escape.py", "content": "x = 1"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(traversal.status, 400, "{}", traversal.text());
    assert!(traversal.text().contains("Path traversal detected"));
    let nul = server.post(
        "/api/v3/plugins/files",
        &[("content-type", "application/json")],
        json!({"plugin_name": "a\u{0}b.py", "content": "x = 1"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(nul.status, 400, "{}", nul.text());
    assert!(!dir.path().join("escape.py").exists());
}

#[test]
fn uploads_need_a_plugin_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let file = dir.path().join("plugin.py");
    std::fs::write(&file, WRITE_REPORTS).expect("written");
    let refused = create_trigger(
        &server,
        "t",
        "all_tables",
        file.to_str().expect("utf-8"),
        &["--upload"],
    );
    assert!(failed(&refused).contains("not configured"));
}

#[test]
fn plugin_tests_run_on_the_server_without_writing() {
    on_runtime("wasm", plugin_tests_on_the_server);
}

#[test]
fn plugin_tests_run_on_the_server_without_writing_on_pyo3() {
    on_runtime("pyo3", plugin_tests_on_the_server);
}

fn plugin_tests_on_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = dir.path().join("plugins");
    write_package(
        &plugin_dir,
        &[
            ("wal_test.py", WAL_TEST),
            ("schedule_test.py", SCHEDULE_TEST),
            (
                "indented.py",
                "def process_writes(influxdb3_local, table_batches, args=None):\n    pass\n        x = 1\n",
            ),
            (
                "cache_put.py",
                "def process_scheduled_call(influxdb3_local, call_time, args=None):\n    influxdb3_local.cache.put('k', {'n': [1, 2]})\n",
            ),
            (
                "cache_get.py",
                "def process_scheduled_call(influxdb3_local, call_time, args=None):\n    influxdb3_local.info(f\"got {influxdb3_local.cache.get('k')}\")\n",
            ),
        ],
    );
    let server = start_with_plugin_dir(dir.path(), &plugin_dir);
    write_cpu_rows(&server, "");

    // test_wal_plugin_test: real queries, reported writes, nothing written.
    let tested = client(
        &server,
        &[
            "test",
            "wal_plugin",
            "-d",
            "foo",
            "--lp",
            "test_input,tag1=tag1_value,tag2=tag2_value field1=1i 500",
            "--input-arguments",
            "arg1=arg1_value,host=s2",
            "wal_test.py",
        ],
    );
    let report: Value = serde_json::from_str(&succeeded(&tested)).expect("JSON");
    assert_eq!(
        report,
        json!({
            "log_lines": [
                "INFO: arg1: arg1_value",
                "INFO: query result: [{'host': 's2', 'region': 'us-east', 'usage': 0.89}]",
                "INFO: i [{'host': 's2', 'region': 'us-east', 'usage': 0.89}] s2",
                "WARN: w: [{'host': 's2', 'region': 'us-east', 'usage': 0.89}]",
                "ERROR: err [{'host': 's2', 'region': 'us-east', 'usage': 0.89}]",
                "INFO: table: test_input",
                "INFO: row: {'tag1': 'tag1_value', 'tag2': 'tag2_value', 'field1': 1, 'time': 500}",
                "INFO: done",
            ],
            "database_writes": {
                "mytestdb": ["other_table other_field=1i,other_field2=3.14 1302"],
                "foo": ["some_table,tag1=tag1_value,tag2=tag2_value field1=1i,field2=2.0,field3=\"number three\""],
            },
            "errors": [],
        })
    );
    let databases = server.get("/api/v3/configure/database?format=json", &[]);
    assert!(
        !databases.text().contains("mytestdb"),
        "{}",
        databases.text()
    );

    // test_schedule_plugin_test.
    let tested = client(
        &server,
        &[
            "test",
            "schedule_plugin",
            "-d",
            "foo",
            "--schedule",
            "*/5 * * * * *",
            "--input-arguments",
            "region=us-east",
            "schedule_test.py",
        ],
    );
    let report: Value = serde_json::from_str(&succeeded(&tested)).expect("JSON");
    assert!(
        report["trigger_time"]
            .as_str()
            .expect("a time")
            .contains('T'),
        "{report}"
    );
    assert_eq!(
        report["log_lines"],
        json!([
            "INFO: args are {'region': 'us-east'}",
            "INFO: Successfully called"
        ])
    );
    assert_eq!(report["database_writes"], json!({}));

    // test_wal_plugin_errors: a broken plugin is a report, not an HTTP error. Upstream
    // names the file `<string>`; Sluice names the plugin's file, as in all its errors.
    let tested = client(
        &server,
        &[
            "test",
            "wal_plugin",
            "-d",
            "foo",
            "--lp",
            "m f=1i",
            "indented.py",
        ],
    );
    let report: Value = serde_json::from_str(&succeeded(&tested)).expect("JSON");
    assert_eq!(
        report["errors"],
        json!([
            "error executing plugin: IndentationError: unexpected indent (indented.py, line 3)"
        ])
    );

    // test_cache_persistence_across_runs: runs with the same cache name share it.
    for plugin in ["cache_put.py", "cache_get.py"] {
        let tested = client(
            &server,
            &[
                "test",
                "schedule_plugin",
                "-d",
                "foo",
                "--cache-name",
                "shared",
                plugin,
            ],
        );
        succeeded(&tested);
        if plugin == "cache_get.py" {
            let report: Value = serde_json::from_str(&succeeded(&tested)).expect("JSON");
            assert_eq!(report["log_lines"], json!(["INFO: got {'n': [1, 2]}"]));
        }
    }

    // A schedule test on a database that does not exist; a missing plugin; bad input.
    let body = json!({"filename": "schedule_test.py", "database": "nowhere"}).to_string();
    let response = server.post(
        "/api/v3/plugin_test/schedule",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["errors"], json!(["couldn't find db"]));
    let body =
        json!({"filename": "missing.py", "database": "foo", "input_lp": "m f=1"}).to_string();
    let response = server.post(
        "/api/v3/plugin_test/wal",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(response.status, 404, "{}", response.text());
    assert!(response.text().contains("Plugin not found: missing.py"));
    let body =
        json!({"filename": "wal_test.py", "database": "foo", "input_lp": "not lp"}).to_string();
    let response = server.post(
        "/api/v3/plugin_test/wal",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(response.text().contains("invalid line protocol input"));
}

/// A plugin repository on a loopback port serving `files` (path → content; others are
/// 404) for at most `requests` requests; returns its URL.
fn plugin_repository(files: Vec<(&'static str, String)>, requests: usize) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!("http://{}/", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests).flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line.split(' ').nth(1).unwrap_or("/");
            let (status, body) = match files.iter().find(|(p, _)| format!("/{p}") == path) {
                Some((_, content)) => ("200 OK", content.clone()),
                None => ("404 Not Found", "404: Not Found".to_string()),
            };
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = (&stream).write_all(
                format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    url
}

#[test]
fn repository_plugins_are_fetched_at_create_and_kept() {
    on_runtime("wasm", repository_plugins);
}

#[test]
fn repository_plugins_are_fetched_at_create_and_kept_on_pyo3() {
    on_runtime("pyo3", repository_plugins);
}

fn repository_plugins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = dir.path().join("plugins");
    let plugin_dir = plugin_dir.to_str().expect("utf-8");
    let example =
        std::fs::read_to_string(crate::support::root().join("examples/python/wal_plugin.py"))
            .expect("example");
    let repository = plugin_repository(
        vec![
            ("examples/wal_plugin.py", example.clone()),
            ("examples/tested_only.py", example),
        ],
        20,
    );
    let server = start_server(
        dir.path(),
        &["--plugin-dir", plugin_dir, "--plugin-repo", &repository],
    );
    server.create_database("db");

    // test_load_wal_plugin_from_gh, against a repository on loopback.
    let created = create_trigger(
        &server,
        "reports",
        "table:cpu",
        "gh:examples/wal_plugin.py",
        &[],
    );
    succeeded(&created);
    let tested = client(
        &server,
        &[
            "test",
            "wal_plugin",
            "-d",
            "foo",
            "--lp",
            "test_input,host=a f=1i 1",
            "gh:examples/wal_plugin.py",
        ],
    );
    let report: Value = serde_json::from_str(&succeeded(&tested)).expect("JSON");
    assert_eq!(
        report["database_writes"],
        json!({"foo": ["write_reports,table_name=test_input row_count=1i"]})
    );
    // A plugin no trigger uses yet is fetched for the test.
    let tested = client(
        &server,
        &[
            "test",
            "wal_plugin",
            "-d",
            "foo",
            "--lp",
            "t f=1i 1",
            "gh:examples/tested_only.py",
        ],
    );
    let report: Value = serde_json::from_str(&succeeded(&tested)).expect("JSON");
    assert_eq!(report["errors"], json!([]), "{report}");

    // test_trigger_create_validates_file_present.
    let missing = server.create_trigger(&crate::server::trigger_body(
        "missing",
        "all_tables",
        "gh:not_a_file.py",
        Value::Null,
        "log",
    ));
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert!(
        missing
            .text()
            .contains("error fetching plugin from repository: 404 Not Found"),
        "{}",
        missing.text()
    );

    // Restarted with a repository that cannot be reached: the trigger runs from the copy
    // kept at create; a new `gh:` trigger gets a clear 502.
    drop(server);
    let server = start_server(
        dir.path(),
        &[
            "--plugin-dir",
            plugin_dir,
            "--plugin-repo",
            "http://127.0.0.1:1/",
        ],
    );
    let written = server.post("/api/v3/write_lp?db=db", &[], b"cpu,host=a usage=1 1");
    assert_eq!(written.status, 204, "{}", written.text());
    wait_for_rows(
        &server,
        "db",
        "SELECT table_name, row_count FROM write_reports",
        &json!([{"table_name": "cpu", "row_count": 1}]),
    );
    let unreachable = server.create_trigger(&crate::server::trigger_body(
        "other",
        "all_tables",
        "gh:examples/wal_plugin.py",
        Value::Null,
        "log",
    ));
    assert_eq!(unreachable.status, 502, "{}", unreachable.text());
    assert!(
        unreachable.text().contains(
            "error fetching plugin from repository: http://127.0.0.1:1/examples/wal_plugin.py"
        ),
        "{}",
        unreachable.text()
    );
    let escaping = server.create_trigger(&crate::server::trigger_body(
        "escaping",
        "all_tables",
        "gh:../../secret.py",
        Value::Null,
        "log",
    ));
    assert_eq!(escaping.status, 400, "{}", escaping.text());
}

/// Upstream's `test_linebuilder_escaping` plugin body (the golden lines of its test).
const LINE_BUILDER_ESCAPING: &str = r#"
def process_writes(influxdb3_local, table_batches, args=None):
    influxdb3_local.write(LineBuilder("metrics").tag("host", "server01").tag("region", "us-west").int64_field("cpu", 42).uint64_field("memory_bytes", 8589934592).float64_field("load", 86.5).string_field("status", "online").bool_field("healthy", True).time_ns(1609459200000000000))
    influxdb3_local.write(LineBuilder("system_metrics").tag("server", "app server 1").tag("datacenter", "us west").int64_field("count", 1))
    influxdb3_local.write(LineBuilder("network").tag("servers", "web,app,db").tag("location", "floor1,rack3").int64_field("connections", 256))
    influxdb3_local.write(LineBuilder("formulas").tag("equation", "y=mx+b").tag("result", "a=b=c").float64_field("value", 3.14159))
    influxdb3_local.write(LineBuilder("paths").tag("windows_path", "C:\\Program Files\\App").tag("regex", "\\d+\\w+").string_field("description", "Windows\\Unix paths").int64_field("count", 42))
    influxdb3_local.write(LineBuilder("messages").tag("type", "notification").string_field("content", 'User said "Hello World"').string_field("json", '{"key": "value"}').int64_field("priority", 1))
    influxdb3_local.write(LineBuilder("complex,measurement").tag("location", "New York, USA").tag("details", "floor=5, room=3").tag("path", "C:\\Users\\Admin\\Documents").string_field("message", 'Error in line: "x = y + z"').string_field("query", 'SELECT * FROM table WHERE id="abc"').float64_field("value", 123.456).time_ns(1609459200000000000))
    influxdb3_local.write(LineBuilder("sensor_data").tag("device", "thermostat").tag("room", "living room").tag("floor", 1).float64_field("temperature", 72.5).int64_field("humidity", 45).string_field("mode", "auto"))
    influxdb3_local.write_to_db("metrics_db", LineBuilder("memory_stats").tag("host", "server1").int64_field("usage", 75))
    influxdb3_local.info("All LineBuilder tests completed")
"#;

const CACHE_BASIC: &str = r#"
def process_scheduled_call(influxdb3_local, call_time, args=None):
    influxdb3_local.cache.put("test_key", "test_value")
    influxdb3_local.info(f"Retrieved value: {influxdb3_local.cache.get('test_key')}")
    if influxdb3_local.cache.get("test_key") == "test_value":
        influxdb3_local.info("Cache test passed")
"#;

const CACHE_TTL: &str = r#"
import time

def process_scheduled_call(influxdb3_local, call_time, args=None):
    influxdb3_local.cache.put("expiring_key", "expires_soon", ttl=1.0)
    influxdb3_local.info(f"Immediate retrieval: {influxdb3_local.cache.get('expiring_key')}")
    influxdb3_local.info("Waiting for TTL to expire...")
    time.sleep(1.5)
    value = influxdb3_local.cache.get("expiring_key")
    influxdb3_local.info(f"After expiration: {value}")
    if value is None:
        influxdb3_local.info("TTL test passed")
"#;

const CACHE_NAMESPACES: &str = r#"
def process_scheduled_call(influxdb3_local, call_time, args=None):
    influxdb3_local.cache.put("shared_key", "trigger_value")
    influxdb3_local.cache.put("shared_key", "global_value", use_global=True)
    influxdb3_local.info(f"Trigger cache value: {influxdb3_local.cache.get('shared_key')}")
    influxdb3_local.info(f"Global cache value: {influxdb3_local.cache.get('shared_key', use_global=True)}")
"#;

const CACHE_DELETION: &str = r#"
def process_scheduled_call(influxdb3_local, call_time, args=None):
    influxdb3_local.cache.put("delete_me", "value")
    influxdb3_local.info(f"Deletion result: {influxdb3_local.cache.delete('delete_me')}")
    influxdb3_local.info(f"After deletion: {influxdb3_local.cache.get('delete_me')}")
    influxdb3_local.info(f"Deleting non-existent key: {influxdb3_local.cache.delete('never_there')}")
"#;

const CACHE_COMPLEX: &str = r#"
def process_scheduled_call(influxdb3_local, call_time, args=None):
    value = {"nested": {"a": [1, 2, {"b": "c"}]}, "items": [1, "two", 3.0]}
    influxdb3_local.cache.put("complex", value)
    got = influxdb3_local.cache.get("complex")
    influxdb3_local.info(f"types: {type(got).__name__}/{type(got['nested']).__name__}/{type(got['items']).__name__}")
    influxdb3_local.info(f"equal: {got == value}")
"#;

const CACHE_WAL: &str = r#"
def process_writes(influxdb3_local, table_batches, args=None):
    rows = sum(len(b["rows"]) for b in table_batches)
    count = influxdb3_local.cache.get("row_count")
    if count is None:
        influxdb3_local.info("First run, initializing count")
        count = 0
    else:
        influxdb3_local.info(f"Previous count: {count}")
    influxdb3_local.cache.put("row_count", count + rows)
    influxdb3_local.info(f"Updated count: {count + rows}")
"#;

const STRFTIME: &str = r#"
from datetime import datetime

def process_scheduled_call(influxdb3_local, call_time, args=None):
    now = datetime.now()
    influxdb3_local.info(f"Current time: {now.strftime('%Y-%m-%d %H:%M:%S')}")
    influxdb3_local.info(f"Date only: {now.strftime('%Y-%m-%d')}")
    influxdb3_local.info(f"Custom format: {now.strftime('%B %d, %Y at %I:%M %p')}")
"#;

const TAG_QUERY: &str = r#"
def process_scheduled_call(influxdb3_local, call_time, args=None):
    rows = influxdb3_local.query("SELECT host, region, usage FROM cpu WHERE region = 'us-east' ORDER BY host")
    assert [r["host"] for r in rows] == ["s2", "s3"], rows
    influxdb3_local.info("successfully queried")
"#;

const SPARSE: &str = r#"
def process_scheduled_call(influxdb3_local, call_time, args=None):
    for row in influxdb3_local.query("SELECT * FROM m0 ORDER BY time"):
        influxdb3_local.info(f"{row['f1']} {row['f2']}")
"#;

const WRONG_SIGNATURE: &str = r#"
def process_writes(influxdb3_local):
    pass
"#;

const NO_FIELDS: &str = r#"
def process_writes(influxdb3_local, table_batches, args=None):
    influxdb3_local.write(LineBuilder("some_table").tag("t", "v"))
"#;

/// Runs a test command on `server` and returns its report.
fn report(server: &TestServer, args: &[&str]) -> Value {
    serde_json::from_str(&succeeded(&client(server, args))).expect("JSON")
}

fn log_lines(report: &Value) -> Vec<String> {
    report["log_lines"]
        .as_array()
        .expect("log lines")
        .iter()
        .map(|l| l.as_str().expect("text").to_string())
        .collect()
}

#[test]
fn plugin_api_scenarios_match_upstream() {
    on_runtime("wasm", plugin_api_scenarios);
}

#[test]
fn plugin_api_scenarios_match_upstream_on_pyo3() {
    on_runtime("pyo3", plugin_api_scenarios);
}

fn plugin_api_scenarios() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = dir.path().join("plugins");
    write_package(
        &plugin_dir,
        &[
            ("escaping.py", LINE_BUILDER_ESCAPING),
            ("cache_basic.py", CACHE_BASIC),
            ("cache_ttl.py", CACHE_TTL),
            ("cache_namespaces.py", CACHE_NAMESPACES),
            ("cache_deletion.py", CACHE_DELETION),
            ("cache_complex.py", CACHE_COMPLEX),
            ("cache_wal.py", CACHE_WAL),
            ("strftime.py", STRFTIME),
            ("tag_query.py", TAG_QUERY),
            ("sparse.py", SPARSE),
            ("wrong_signature.py", WRONG_SIGNATURE),
            ("no_fields.py", NO_FIELDS),
            ("no_entry_point.py", "x = 1\n"),
        ],
    );
    let server = start_with_plugin_dir(dir.path(), &plugin_dir);
    write_cpu_rows(&server, "\nm0 f1=1i 1\nm0 f2=2i 2\nm0 f1=3i,f2=4i 3");
    let wal = |plugin: &str, lp: &str| {
        report(
            &server,
            &[
                "test",
                "wal_plugin",
                "-d",
                "foo",
                "--lp",
                lp,
                "--cache-name",
                plugin,
                plugin,
            ],
        )
    };
    let schedule =
        |plugin: &str| report(&server, &["test", "schedule_plugin", "-d", "foo", plugin]);

    // test_linebuilder_escaping: upstream's golden lines, byte for byte.
    let escaped = wal("escaping.py", "trigger f=1i");
    assert_eq!(
        escaped,
        json!({
            "log_lines": ["INFO: All LineBuilder tests completed"],
            "database_writes": {
                "foo": [
                    r#"metrics,host=server01,region=us-west cpu=42i,memory_bytes=8589934592u,load=86.5,status="online",healthy=t 1609459200000000000"#,
                    r#"system_metrics,server=app\ server\ 1,datacenter=us\ west count=1i"#,
                    r#"network,servers=web\,app\,db,location=floor1\,rack3 connections=256i"#,
                    r#"formulas,equation=y\=mx+b,result=a\=b\=c value=3.14159"#,
                    r#"paths,windows_path=C:\\Program\ Files\\App,regex=\\d+\\w+ description="Windows\\Unix paths",count=42i"#,
                    r#"messages,type=notification content="User said \"Hello World\"",json="{\"key\": \"value\"}",priority=1i"#,
                    r#"complex\,measurement,location=New\ York\,\ USA,details=floor\=5\,\ room\=3,path=C:\\Users\\Admin\\Documents message="Error in line: \"x = y + z\"",query="SELECT * FROM table WHERE id=\"abc\"",value=123.456 1609459200000000000"#,
                    r#"sensor_data,device=thermostat,room=living\ room,floor=1 temperature=72.5,humidity=45i,mode="auto""#,
                ],
                "metrics_db": ["memory_stats,host=server1 usage=75i"],
            },
            "errors": [],
        })
    );

    // The cache scenarios (test_basic_cache_functionality, _ttl, _namespaces,
    // _deletion, _complex_object_caching, _with_wal_plugin).
    assert_eq!(
        log_lines(&schedule("cache_basic.py")),
        [
            "INFO: Retrieved value: test_value",
            "INFO: Cache test passed"
        ]
    );
    assert_eq!(
        log_lines(&schedule("cache_ttl.py")),
        [
            "INFO: Immediate retrieval: expires_soon",
            "INFO: Waiting for TTL to expire...",
            "INFO: After expiration: None",
            "INFO: TTL test passed",
        ]
    );
    assert_eq!(
        log_lines(&schedule("cache_namespaces.py")),
        [
            "INFO: Trigger cache value: trigger_value",
            "INFO: Global cache value: global_value",
        ]
    );
    assert_eq!(
        log_lines(&schedule("cache_deletion.py")),
        [
            "INFO: Deletion result: True",
            "INFO: After deletion: None",
            "INFO: Deleting non-existent key: False",
        ]
    );
    assert_eq!(
        log_lines(&schedule("cache_complex.py")),
        ["INFO: types: dict/dict/list", "INFO: equal: True"]
    );
    assert_eq!(
        log_lines(&wal("cache_wal.py", "t f=1i 1\nt f=2i 2\nt f=3i 3")),
        [
            "INFO: First run, initializing count",
            "INFO: Updated count: 3"
        ]
    );
    assert_eq!(
        log_lines(&wal("cache_wal.py", "t f=1i 1\nt f=2i 2")),
        ["INFO: Previous count: 3", "INFO: Updated count: 5"]
    );

    // test_schedule_plugin_test_with_strftime, test_tag_query_behavior,
    // test_query_with_sparse_fields.
    let times = log_lines(&schedule("strftime.py"));
    assert_eq!(times.len(), 3, "{times:?}");
    assert!(times[0].starts_with("INFO: Current time: 20"), "{times:?}");
    let tagged = schedule("tag_query.py");
    assert_eq!(tagged["errors"], json!([]));
    assert_eq!(log_lines(&tagged), ["INFO: successfully queried"]);
    assert_eq!(
        log_lines(&schedule("sparse.py")),
        ["INFO: 1 None", "INFO: None 2", "INFO: 3 4"]
    );

    // test_wal_plugin_errors: the message of each kind of failure.
    let first_error = |plugin: &str| {
        wal(plugin, "m f=1i")["errors"][0]
            .as_str()
            .expect("an error")
            .to_string()
    };
    assert_eq!(
        first_error("wrong_signature.py"),
        "error executing plugin: TypeError: process_writes() takes 1 positional argument but 3 were given"
    );
    assert!(
        first_error("no_fields.py").starts_with(
            "error executing plugin: InvalidLineError: At least one field is required: some_table,t=v"
        ),
        "{}",
        first_error("no_fields.py")
    );
    assert!(
        first_error("no_entry_point.py")
            .starts_with("error executing plugin: the process_writes function is not present"),
        "{}",
        first_error("no_entry_point.py")
    );
}

/// The plugin of upstream's `test_request_plugin_and_trigger`.
const REQUEST: &str = r#"
import json

def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    for k, v in query_parameters.items():
        influxdb3_local.info(f"query_parameters: {k}={v}")
    for k, v in request_headers.items():
        influxdb3_local.info(f"request_headers: {k}={v}")
    request_data = json.loads(request_body)
    influxdb3_local.info("parsed JSON request body:", request_data)
    line = LineBuilder("request_data").tag("tag1", "tag1_value").int64_field("field1", 1)
    influxdb3_local.write_sync(line, no_sync=True)
    return {"status": "ok", "line": line.build()}
"#;

/// The return values of upstream's `test_flask_*` tests, chosen by `?case=`.
const FLASK: &str = r#"
class FlaskLike:
    status_code = 202
    headers = {"Content-Type": "text/custom", "X-Generated-By": "FlaskResponse"}
    def __flask_response__(self):
        return True
    def get_data(self):
        return "Custom Flask Response"

def lines():
    yield "Line 1\n"
    yield "Line 2\n"
    yield "Line 3\n"

def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    case = query_parameters["case"]
    if case == "string":
        return "Hello, World!"
    if case == "dict":
        return {"message": "Hello, World!"}
    if case == "status":
        return "Created successfully", 201
    if case == "headers":
        return "Custom Content-Type", {"Content-Type": "text/plain", "X-Custom-Header": "test-value"}
    if case == "all":
        return "Not Found", 404, {"Content-Type": "text/plain", "X-Error": "missing"}
    if case == "list":
        return ["item1", "item2", "item3"]
    if case == "generator":
        return lines()
    if case == "flask":
        return FlaskLike()
    if case == "json_status":
        return {"error": "Not Found", "code": 404}, 404
"#;

/// Writes one row the first time it runs after the trigger starts (its cache is empty
/// then), as upstream's `test_trigger_cache_cleanup`.
const STARTS: &str = r#"
def process_scheduled_call(influxdb3_local, call_time, args=None):
    if influxdb3_local.cache.get("started") is None:
        influxdb3_local.cache.put("started", True)
        influxdb3_local.write(LineBuilder("starts").int64_field("n", 1))
"#;

#[test]
fn trigger_lifecycle_and_request_scenarios_match_upstream() {
    on_runtime("wasm", trigger_lifecycle_and_request_scenarios);
}

#[test]
fn trigger_lifecycle_and_request_scenarios_match_upstream_on_pyo3() {
    on_runtime("pyo3", trigger_lifecycle_and_request_scenarios);
}

fn trigger_lifecycle_and_request_scenarios() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = dir.path().join("plugins");
    write_package(
        &plugin_dir,
        &[
            ("reports.py", WRITE_REPORTS),
            ("request.py", REQUEST),
            ("flask.py", FLASK),
            ("starts.py", STARTS),
        ],
    );
    let plugin_dir = plugin_dir.to_str().expect("utf-8");
    let flags = ["--plugin-dir", plugin_dir];
    let server = start_server(dir.path(), &flags);
    server.create_database("db");
    let create = |server: &TestServer, name: &str, spec: &str, plugin: &str, extra: &[&str]| {
        let output = create_trigger(server, name, spec, plugin, extra);
        assert_eq!(
            succeeded(&output).trim(),
            format!("Trigger {name} created successfully")
        );
    };

    // test_create_trigger_and_run, then test_triggers_are_started: the trigger runs
    // after a restart without being touched.
    create(
        &server,
        "reports",
        "all_tables",
        "reports.py",
        &["--trigger-arguments", "double_count_table=cpu"],
    );
    drop(server);
    let server = start_server(dir.path(), &flags);
    write_and_expect_reports(&server);

    // test_trigger_enable: enabling an enabled trigger succeeds, as does disabling.
    let enabled = client(&server, &["enable", "trigger", "-d", "db", "reports"]);
    assert_eq!(
        succeeded(&enabled).trim(),
        "Trigger reports enabled successfully"
    );
    let disabled = client(&server, &["disable", "trigger", "-d", "db", "reports"]);
    assert_eq!(
        succeeded(&disabled).trim(),
        "Trigger reports disabled successfully"
    );

    // test_delete_enabled_trigger: only with --force.
    create(&server, "doomed", "all_tables", "reports.py", &[]);
    let refused = client(&server, &["delete", "trigger", "-d", "db", "doomed"]);
    assert!(
        failed(&refused).contains("Cannot delete running plugin doomed"),
        "{}",
        text(&refused)
    );
    let deleted = client(
        &server,
        &["delete", "trigger", "-d", "db", "--force", "doomed"],
    );
    assert_eq!(
        succeeded(&deleted).trim(),
        "Trigger doomed deleted successfully"
    );

    // test_table_specific_trigger.
    let table = server.post(
        "/api/v3/configure/table",
        &[("content-type", "application/json")],
        br#"{"db": "db", "table": "bar", "tags": ["tag1"], "fields": [{"name": "field1", "type": "float64"}]}"#,
    );
    assert_eq!(table.status, 200, "{}", table.text());
    create(
        &server,
        "bar_trigger",
        "table:bar",
        "reports.py",
        &["--disabled"],
    );

    // test_request_plugin_and_trigger (with test_..._no_auth_header: the admin token is
    // sent, and not passed to the plugin).
    create(
        &server,
        "foo",
        "request:bar",
        "request.py",
        &["--trigger-arguments", "test_arg=hello"],
    );
    let answered = server.post(
        "/api/v3/engine/bar?q1=whatevs",
        &[("content-type", "application/json")],
        br#"{"hello": "world"}"#,
    );
    assert_eq!(answered.status, 200, "{}", answered.text());
    assert_eq!(
        answered.json(),
        json!({"status": "ok", "line": "request_data,tag1=tag1_value field1=1i"})
    );
    // `no_sync=True`: acknowledged before the flush, queryable after it.
    wait_for_rows(
        &server,
        "db",
        "SELECT tag1, field1 FROM request_data",
        &json!([{"tag1": "tag1_value", "field1": 1}]),
    );
    let logs = server.query(
        "db",
        "SELECT log_text FROM system.processing_engine_logs WHERE trigger_name = 'foo'",
    );
    assert!(
        logs.to_string().contains("query_parameters: q1=whatevs"),
        "{logs}"
    );
    assert!(!logs.to_string().contains("authorization"), "{logs}");
    // Hot reload: the rewritten file answers the next call.
    std::fs::write(
        Path::new(plugin_dir).join("request.py"),
        "def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):\n    return {'status': 'updated'}\n",
    )
    .expect("rewritten");
    assert_eq!(engine_json(&server, "bar"), json!({"status": "updated"}));

    // The test_flask_* return conventions.
    create(&server, "flask", "request:flask", "flask.py", &[]);
    let cases: [(&str, u16, &str, &str); 9] = [
        ("string", 200, "text/html", "Hello, World!"),
        (
            "dict",
            200,
            "application/json",
            r#"{"message": "Hello, World!"}"#,
        ),
        ("status", 201, "text/html", "Created successfully"),
        ("headers", 200, "text/plain", "Custom Content-Type"),
        ("all", 404, "text/plain", "Not Found"),
        (
            "list",
            200,
            "application/json",
            r#"["item1", "item2", "item3"]"#,
        ),
        ("generator", 200, "text/html", "Line 1\nLine 2\nLine 3\n"),
        ("flask", 202, "text/custom", "Custom Flask Response"),
        (
            "json_status",
            404,
            "application/json",
            r#"{"error": "Not Found", "code": 404}"#,
        ),
    ];
    for (case, status, content_type, body) in cases {
        let response = server.get(&format!("/api/v3/engine/flask?case={case}"), &[]);
        assert_eq!(response.status, status, "{case}: {}", response.text());
        assert_eq!(
            response.header("content-type"),
            Some(content_type),
            "{case}"
        );
        assert_eq!(response.text(), body, "{case}");
    }
    let custom = server.get("/api/v3/engine/flask?case=headers", &[]);
    assert_eq!(custom.header("x-custom-header"), Some("test-value"));
    let flask = server.get("/api/v3/engine/flask?case=flask", &[]);
    assert_eq!(flask.header("x-generated-by"), Some("FlaskResponse"));

    // test_trigger_cache_cleanup: disabling drops the trigger's cache, so the plugin
    // starts afresh when enabled again.
    create(&server, "starts", "every:1s", "starts.py", &[]);
    wait_for_rows(
        &server,
        "db",
        "SELECT count(*) AS n FROM starts",
        &json!([{"n": 1}]),
    );
    succeeded(&client(
        &server,
        &["disable", "trigger", "-d", "db", "starts"],
    ));
    succeeded(&client(
        &server,
        &["enable", "trigger", "-d", "db", "starts"],
    ));
    wait_for_rows(
        &server,
        "db",
        "SELECT count(*) AS n FROM starts",
        &json!([{"n": 2}]),
    );

    // show system: the list of system tables, and a summary of each.
    let listed = succeeded(&client(
        &server,
        &[
            "show",
            "system",
            "-d",
            "db",
            "table-list",
            "--format",
            "csv",
        ],
    ));
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        [
            "table_name",
            "plugin_files",
            "processing_engine_cache",
            "processing_engine_invocations",
            "processing_engine_logs",
            "processing_engine_trigger_arguments",
            "processing_engine_triggers",
            "processing_engine_usage",
            "processing_engine_wal_triggers",
            "storage_problems",
        ]
    );
    let summary = succeeded(&client(
        &server,
        &["show", "system", "-d", "db", "summary", "--limit", "1"],
    ));
    for table in ["plugin_files", "processing_engine_triggers"] {
        assert!(summary.contains(&format!("{table} summary:")), "{summary}");
    }
    assert!(summary.contains("bar_trigger"), "{summary}");
}
