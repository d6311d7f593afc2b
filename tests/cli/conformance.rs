//! Upstream's end-to-end scenarios for the processing engine (its `tests/cli` suite),
//! against the real server and CLI, asserting the outputs upstream's tests expect. Where
//! Sluice differs on purpose, the assertion says so.

use crate::server::TestServer;
use crate::support::{sluice, text};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = json!({"db": db, "q": sql}).to_string();
        let response = server.post(
            "/api/v3/query_sql",
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        if response.status == 200 && response.json() == *expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql} on {db}: {} {}",
            response.status,
            response.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
fn client(server: &TestServer, args: &[&str]) -> Output {
    let flags = client_flags(server);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(flags.iter().map(String::as_str));
    run(&all)
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
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = dir.path().join("plugins");
    let local = dir.path().join("local");
    let server = TestServer::start_with(
        dir.path(),
        &["--plugin-dir", plugin_dir.to_str().expect("utf-8")],
    );
    server.create_database("db");
    let local_str = |name: &str| local.join(name).to_string_lossy().into_owned();

    // test_create_trigger_with_upload: a file from another directory.
    write_package(&local, &[("reports.py", WRITE_REPORTS)]);
    let created = client(
        &server,
        &[
            "create",
            "trigger",
            "-d",
            "db",
            "--trigger-spec",
            "all_tables",
            "--path",
            &local_str("reports.py"),
            "--upload",
            "--trigger-arguments",
            "double_count_table=cpu",
            "reports",
        ],
    );
    assert_eq!(
        succeeded(&created).trim(),
        "Trigger reports created successfully"
    );
    assert!(plugin_dir.join("reports.py").is_file());
    let written = server.post(
        "/api/v3/write_lp?db=db",
        &[],
        b"cpu,host=a f1=1.0\ncpu,host=b f1=2.0\nmem,host=a usage=234",
    );
    assert_eq!(written.status, 204, "{}", written.text());
    wait_for_rows(
        &server,
        "db",
        "SELECT table_name, row_count FROM write_reports ORDER BY table_name",
        &json!([{"table_name":"cpu","row_count":4},{"table_name":"mem","row_count":1}]),
    );

    // test_upload_plugin_file_not_found.
    let missing = client(
        &server,
        &[
            "create",
            "trigger",
            "-d",
            "db",
            "--trigger-spec",
            "request:nothing",
            "--path",
            &local_str("missing.py"),
            "--upload",
            "nothing",
        ],
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
        let created = client(
            &server,
            &[
                "create",
                "trigger",
                "-d",
                "db",
                "--trigger-spec",
                &format!("request:{trigger}"),
                "--path",
                &local_str(&format!("{version}/echo.py")),
                "--upload",
                trigger,
            ],
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
    let created = client(
        &server,
        &[
            "create",
            "trigger",
            "-d",
            "db",
            "--trigger-spec",
            "request:pkg",
            "--path",
            &local_str("pkg"),
            "--upload",
            "pkg",
        ],
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
    let refused = client(
        &server,
        &[
            "create",
            "trigger",
            "-d",
            "db",
            "--trigger-spec",
            "request:noinit",
            "--path",
            &local_str("noinit"),
            "--upload",
            "noinit",
        ],
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
    assert!(!dir.path().join("escape.py").exists());
}

#[test]
fn uploads_need_a_plugin_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path());
    let file = dir.path().join("plugin.py");
    std::fs::write(&file, WRITE_REPORTS).expect("written");
    let refused = client(
        &server,
        &[
            "create",
            "trigger",
            "-d",
            "db",
            "--trigger-spec",
            "all_tables",
            "--path",
            file.to_str().expect("utf-8"),
            "--upload",
            "t",
        ],
    );
    assert!(failed(&refused).contains("not configured"));
}

#[test]
fn plugin_tests_run_on_the_server_without_writing() {
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
    let server = TestServer::start_with(
        dir.path(),
        &["--plugin-dir", plugin_dir.to_str().expect("utf-8")],
    );
    let written = server.post(
        "/api/v3/write_lp?db=foo",
        &[],
        b"cpu,host=s1,region=us-west usage=0.9\ncpu,host=s2,region=us-east usage=0.89\ncpu,host=s3,region=us-east usage=0.5",
    );
    assert_eq!(written.status, 204, "{}", written.text());

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
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = dir.path().join("plugins");
    let plugin_dir = plugin_dir.to_str().expect("utf-8");
    let example =
        std::fs::read_to_string(crate::support::root().join("examples/python/wal_plugin.py"))
            .expect("example");
    let repository = plugin_repository(vec![("examples/wal_plugin.py", example)], 20);
    let server = TestServer::start_with(
        dir.path(),
        &["--plugin-dir", plugin_dir, "--plugin-repo", &repository],
    );
    server.create_database("db");

    // test_load_wal_plugin_from_gh, against a repository on loopback.
    let created = client(
        &server,
        &[
            "create",
            "trigger",
            "-d",
            "db",
            "--trigger-spec",
            "table:cpu",
            "--path",
            "gh:examples/wal_plugin.py",
            "reports",
        ],
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
    let server = TestServer::start_with(
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
