//! The pyo3 runtime beside the sandbox on the real server: the admin's triggers created
//! with `runtime: pyo3` run their plugins on the machine's CPython, through the same
//! host; everything else stays in the sandbox; what the runtime cannot do is refused.

use crate::server::{TestServer, plugin_dir_with, trigger_body};
use crate::support::{sluice, text};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Says where it runs, queries what the flush wrote, and writes both ways.
const WHERE_AM_I: &str = r#"
import sys, time
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    who = query_parameters["who"]
    influxdb3_local.write_sync(LineBuilder("seen").tag("who", who).int64_field("n", 1), False)
    rows = influxdb3_local.query("SELECT count(*) AS n FROM seen WHERE who = $who", {"who": who})
    # Another call runs meanwhile: what each batches stays its own.
    time.sleep(float(query_parameters.get("sleep", "0")))
    influxdb3_local.write(LineBuilder("batched").tag("who", who).int64_field("n", rows[0]["n"]))
    influxdb3_local.info(f"{who} on {sys.platform}")
    return {"platform": sys.platform, "who": who, "seen": rows[0]["n"]}
"#;

/// Copies each flush's rows to `copied`, doubled.
const DOUBLER: &str = r#"
import sys
def process_writes(influxdb3_local, table_batches, args=None):
    for batch in table_batches:
        for row in batch["rows"]:
            line = LineBuilder("copied").tag("platform", sys.platform)
            line.float64_field("usage", row["usage"] * 2)
            influxdb3_local.write(line)
"#;

const PLUGINS: &[(&str, &str)] = &[("where.py", WHERE_AM_I), ("doubler.py", DOUBLER)];

fn on_runtime(mut body: Value, runtime: &str) -> Value {
    body["runtime"] = json!(runtime);
    body
}

fn start(dir: &std::path::Path, runtimes: &str) -> TestServer {
    let plugin_dir = plugin_dir_with(dir, PLUGINS);
    TestServer::start_with(
        dir,
        &[
            "--plugin-dir",
            plugin_dir.to_str().expect("utf-8"),
            "--plugin-runtimes",
            runtimes,
            "--wal-flush-interval",
            "50ms",
        ],
    )
}

#[test]
fn pyo3_triggers_run_natively_beside_sandboxed_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), "wasm,pyo3");
    server.create_database("db");
    let native = trigger_body("native", "request:native", "where.py", Value::Null, "log");
    let created = server.create_trigger(&on_runtime(native, "pyo3"));
    assert_eq!(created.status, 200, "{}", created.text());
    server.add_trigger(
        "sandboxed",
        "request:sandboxed",
        "where.py",
        Value::Null,
        "log",
    );
    let doubler = trigger_body("doubler", "table:cpu", "doubler.py", Value::Null, "log");
    let created = server.create_trigger(&on_runtime(doubler, "pyo3"));
    assert_eq!(created.status, 200, "{}", created.text());

    let answer = server.get("/api/v3/engine/native?who=ann", &[]);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json(),
        json!({"platform": "linux", "who": "ann", "seen": 1})
    );
    let answer = server.get("/api/v3/engine/sandboxed?who=ann", &[]);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json(),
        json!({"platform": "wasi", "who": "ann", "seen": 2})
    );
    server.eventually("db", "SELECT who, n FROM batched ORDER BY n", |rows| {
        rows == &json!([{"who": "ann", "n": 1}, {"who": "ann", "n": 2}])
    });
    server.eventually(
        "db",
        "SELECT log_text FROM system.processing_engine_logs WHERE trigger_name = 'native'",
        |rows| rows == &json!([{"log_text": "ann on linux"}]),
    );

    let written = server.post("/api/v3/write_lp?db=db", &[], b"cpu,host=a usage=0.25");
    assert_eq!(written.status, 204, "{}", written.text());
    server.eventually("db", "SELECT platform, usage FROM copied", |rows| {
        rows == &json!([{"platform": "linux", "usage": 0.5}])
    });
    // Billed as any trigger's calls, the CPU time they took included.
    let triggers = server.query(
        "db",
        "SELECT trigger_name, runtime FROM system.processing_engine_triggers ORDER BY trigger_name",
    );
    assert_eq!(
        triggers,
        json!([
            {"trigger_name": "doubler", "runtime": "pyo3"},
            {"trigger_name": "native", "runtime": "pyo3"},
            {"trigger_name": "sandboxed", "runtime": "wasm"},
        ])
    );
    let usage = server.query(
        "db",
        "SELECT trigger_name, invocations, cpu_time_ms > 0 AS used_cpu FROM system.processing_engine_usage \
         WHERE hour IS NULL AND trigger_name IN ('native', 'doubler') ORDER BY trigger_name",
    );
    assert_eq!(
        usage,
        json!([
            {"trigger_name": "doubler", "invocations": 1, "used_cpu": true},
            {"trigger_name": "native", "invocations": 1, "used_cpu": true},
        ]),
    );
}

#[test]
fn a_python_that_cannot_start_stops_the_server_with_a_message() {
    // The interpreter finds no standard library where PYTHONHOME says, as when the
    // Python the server was built with is gone: CPython would end the process with its
    // fatal error.
    let dir = tempfile::tempdir().expect("temp dir");
    let no_python = dir.path().join("no-python");
    std::fs::create_dir(&no_python).expect("empty dir");
    let plugin_dir = plugin_dir_with(dir.path(), PLUGINS);
    let mut server = sluice()
        .args([
            "serve",
            "--http-bind",
            "127.0.0.1:0",
            "--plugin-runtimes",
            "wasm,pyo3",
        ])
        .arg("--plugin-dir")
        .arg(plugin_dir)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("PYTHONHOME", &no_python)
        // Little on stderr, which nothing reads until the server exits.
        .env("SLUICE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice serve starts");
    // Bounded: a first start of a version makes the sandbox's runtime (minutes).
    let started = Instant::now();
    while server.try_wait().expect("waits").is_none() {
        if started.elapsed() > Duration::from_secs(900) {
            server.kill().expect("kills");
            panic!("the server kept running without its Python");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = server.wait_with_output().expect("exited");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot start the pyo3 runtime: Python 3.")
            && stderr.contains("could not start (init_fs_encoding")
            && stderr.contains("PYTHONHOME"),
        "{stderr}"
    );
    assert!(!stderr.contains("Fatal Python error"), "{stderr}");
}

#[test]
fn concurrent_pyo3_calls_keep_their_writes_apart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), "pyo3,wasm");
    server.create_database("db");
    let mut body = trigger_body("native", "request:native", "where.py", Value::Null, "log");
    body["trigger_settings"]["run_async"] = json!(true);
    let created = server.create_trigger(&on_runtime(body, "pyo3"));
    assert_eq!(created.status, 200, "{}", created.text());
    let callers: Vec<String> = (0..6).map(|i| format!("caller{i}")).collect();
    std::thread::scope(|scope| {
        for who in &callers {
            let server = &server;
            scope.spawn(move || {
                let answer = server.get(&format!("/api/v3/engine/native?who={who}&sleep=0.2"), &[]);
                assert_eq!(answer.status, 200, "{}", answer.text());
                assert_eq!(
                    answer.json(),
                    json!({"platform": "linux", "who": who, "seen": 1})
                );
            });
        }
    });
    let expected: Vec<Value> = callers
        .iter()
        .map(|who| json!({"who": who, "n": 1}))
        .collect();
    server.eventually("db", "SELECT who, n FROM batched ORDER BY who", |rows| {
        rows == &Value::Array(expected.clone())
    });
}

#[test]
fn what_the_pyo3_runtime_cannot_do_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), "wasm");
    server.create_database("db");
    let native = || trigger_body("native", "request:native", "where.py", Value::Null, "log");

    let refused = server.create_trigger(&on_runtime(native(), "pyo3"));
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.text().contains("--plugin-runtimes wasm,pyo3"),
        "{}",
        refused.text()
    );
    let refused = server.create_trigger(&on_runtime(native(), "jvm"));
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.text().contains("unknown variant `jvm`"),
        "{}",
        refused.text()
    );
    drop(server);

    let server = start(dir.path(), "wasm,pyo3");
    let tenant = server.create_token("tenant", &["db:db:read,write,manage"]);
    let bearer = format!("Bearer {tenant}");
    let refused = server.send(
        "POST",
        "/api/v3/configure/processing_engine_trigger",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        on_runtime(native(), "pyo3").to_string().as_bytes(),
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.text().contains("admin"), "{}", refused.text());

    for (limits, name) in [
        (json!({"memory_limit_mib": 64}), "memory"),
        (json!({"cpu_time": "1s"}), "CPU time"),
        (json!({"wall_time": "1s"}), "wall time"),
    ] {
        let mut body = on_runtime(native(), "pyo3");
        body["limits"] = limits;
        let refused = server.create_trigger(&body);
        assert_eq!(refused.status, 400, "{}", refused.text());
        assert!(
            refused
                .text()
                .contains(&format!("cannot enforce a {name} limit")),
            "{}",
            refused.text()
        );
    }
    let mut body = on_runtime(native(), "pyo3");
    body["limits"] = json!({"fuel": 1});
    assert_eq!(server.create_trigger(&body).status, 400);
    // Nothing was created.
    assert_eq!(
        server.query(
            "db",
            "SELECT count(*) AS n FROM system.processing_engine_triggers"
        ),
        json!([{"n": 0}])
    );
    // What the host checks itself it still enforces.
    let mut body = on_runtime(
        trigger_body("small", "request:small", "where.py", Value::Null, "log"),
        "pyo3",
    );
    body["limits"] = json!({"max_response_bytes": 10});
    assert_eq!(server.create_trigger(&body).status, 200);
    let failed = server.get("/api/v3/engine/small?who=a", &[]);
    assert_eq!(failed.status, 500, "{}", failed.text());
    assert!(failed.text().contains("response"), "{}", failed.text());

    // Disabled by the admin, it is not enabled again by the database's token.
    let toggle = |verb: &str, authorization: &str| {
        server.send(
            "POST",
            &format!("/api/v3/configure/processing_engine_trigger/{verb}?db=db&trigger_name=small"),
            &[("authorization", authorization)],
            b"",
        )
    };
    let admin = format!("Bearer {}", server.token());
    assert_eq!(toggle("disable", &admin).status, 200);
    let refused = toggle("enable", &bearer);
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(
        server.query(
            "db",
            "SELECT disabled FROM system.processing_engine_triggers WHERE trigger_name = 'small'"
        ),
        json!([{"disabled": true}])
    );
    assert_eq!(toggle("enable", &admin).status, 200);

    // From the command line too; then a restart without the runtime fails its calls,
    // saying why, and keeps the trigger.
    let created = server.cli(&[
        "create",
        "trigger",
        "-d",
        "db",
        "--trigger-spec",
        "request:native",
        "--path",
        "where.py",
        "--runtime",
        "pyo3",
        "native",
    ]);
    assert!(created.status.success(), "{}", text(&created));
    assert_eq!(server.get("/api/v3/engine/native?who=b", &[]).status, 200);
    drop(server);
    let server = start(dir.path(), "wasm");
    let failed = server.get("/api/v3/engine/native?who=b", &[]);
    assert_eq!(failed.status, 500, "{}", failed.text());
    assert!(
        failed.text().contains("--plugin-runtimes wasm,pyo3"),
        "{}",
        failed.text()
    );
}

/// Starts, says so, and never ends.
const ENDLESS: &str = r#"
def process_scheduled_call(influxdb3_local, call_time, args=None):
    influxdb3_local.info("spinning")
    while True:
        pass
"#;

#[test]
fn an_endless_pyo3_plugin_holds_only_its_own_thread() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = plugin_dir_with(dir.path(), PLUGINS);
    std::fs::write(plugin_dir.join("endless.py"), ENDLESS).expect("written");
    let server = start(dir.path(), "wasm,pyo3");
    server.create_database("db");
    let endless = trigger_body("endless", "every:1s", "endless.py", Value::Null, "log");
    assert_eq!(
        server.create_trigger(&on_runtime(endless, "pyo3")).status,
        200
    );
    server.eventually(
        "db",
        "SELECT log_text FROM system.processing_engine_logs WHERE trigger_name = 'endless'",
        |rows| rows == &json!([{"log_text": "spinning"}]),
    );
    // Its trigger is disabled at once; other pyo3 calls share the interpreter with it
    // and still run, and so does the sandbox.
    let disabled = server.post(
        "/api/v3/configure/processing_engine_trigger/disable?db=db&trigger_name=endless",
        &[],
        b"",
    );
    assert_eq!(disabled.status, 200, "{}", disabled.text());
    let native = trigger_body("native", "request:native", "where.py", Value::Null, "log");
    assert_eq!(
        server.create_trigger(&on_runtime(native, "pyo3")).status,
        200
    );
    let answer = server.get("/api/v3/engine/native?who=a", &[]);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["platform"], "linux");
    server.add_trigger(
        "sandboxed",
        "request:sandboxed",
        "where.py",
        Value::Null,
        "log",
    );
    let answer = server.get("/api/v3/engine/sandboxed?who=a", &[]);
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[test]
fn plugins_are_tested_on_pyo3_on_a_server_and_locally() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), "wasm,pyo3");
    server.create_database("db");
    let local = dir.path().join("plugins/doubler.py");
    let local = local.to_str().expect("utf-8");
    for args in [
        vec![
            "test",
            "wal_plugin",
            "-d",
            "db",
            "--lp",
            "cpu usage=2",
            "--runtime",
            "pyo3",
            "doubler.py",
        ],
        vec![
            "test",
            "wal_plugin",
            "--local",
            "--lp",
            "cpu usage=2",
            "--runtime",
            "pyo3",
            local,
        ],
    ] {
        let output = server.cli(&args);
        assert!(output.status.success(), "{}", text(&output));
        let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
        let writes = report["database_writes"].as_object().expect("writes");
        let lines: Vec<&Value> = writes
            .values()
            .flat_map(|lines| lines.as_array().expect("lines"))
            .collect();
        assert_eq!(
            lines,
            [&json!("copied,platform=linux usage=4.0")],
            "{report}"
        );
    }
    // A database token may test only in the sandbox.
    let tenant = server.create_token("tenant", &["db:db:read,write,manage"]);
    let bearer = format!("Bearer {tenant}");
    let body = json!({"filename": "doubler.py", "database": "db", "input_lp": "cpu usage=2", "runtime": "pyo3"});
    let refused = server.send(
        "POST",
        "/api/v3/plugin_test/wal",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
}

/// Imports two native packages: numpy, which the sandbox's runtime has built in too, and
/// ujson, which it has not.
const NUMPY: &str = r#"
import numpy, ujson
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    return {"sum": int(numpy.arange(10).sum()), "json": ujson.dumps([1, 2]), "numpy": numpy.__file__}
"#;

#[test]
fn native_packages_are_installed_for_pyo3_plugins_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = plugin_dir_with(dir.path(), &[("numbers.py", NUMPY)]);
    let venv = dir.path().join("venv");
    let server = TestServer::start_with_env(
        dir.path(),
        &[
            "--plugin-dir",
            plugin_dir.to_str().expect("utf-8"),
            "--plugin-runtimes",
            "wasm,pyo3",
            "--virtual-env-location",
            venv.to_str().expect("utf-8"),
        ],
        &[
            ("PIP_FIND_LINKS", sluice_test_wheels::NATIVE_WHEELS_DIR),
            ("PIP_NO_INDEX", "1"),
        ],
    );
    server.create_database("db");

    // Not for the sandbox: the refusal points to the pyo3 runtime.
    let refused = server.cli(&["install", "package", "ujson"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("--runtime pyo3"),
        "{}",
        text(&refused)
    );
    // Nor from a database token.
    let tenant = server.create_token("tenant", &["db:db:read,write,manage"]);
    let refused = crate::support::sluice()
        .args([
            "install",
            "package",
            "--runtime",
            "pyo3",
            "-d",
            "db",
            "numpy",
        ])
        .args(["--host", &server.url(), "--token", &tenant])
        .output()
        .expect("sluice runs");
    assert!(!refused.status.success());
    assert!(text(&refused).contains("admin"), "{}", text(&refused));
    assert!(!venv.exists());

    let installed = server.cli(&["install", "package", "--runtime", "pyo3", "numpy", "ujson"]);
    assert!(installed.status.success(), "{}", text(&installed));
    assert!(venv.join("bin/python").exists());

    let native = trigger_body("native", "request:native", "numbers.py", Value::Null, "log");
    assert_eq!(
        server.create_trigger(&on_runtime(native, "pyo3")).status,
        200
    );
    let answer = server.get("/api/v3/engine/native", &[]);
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = answer.json();
    assert_eq!(
        (&answer["sum"], &answer["json"]),
        (&json!(45), &json!("[1,2]"))
    );
    // numpy is the environment's (the machine's Python has none of its own).
    let numpy = answer["numpy"].as_str().expect("a path");
    assert!(numpy.starts_with(venv.to_str().expect("utf-8")), "{numpy}");
    // A sandboxed plugin never sees the runtime's packages.
    server.add_trigger(
        "sandboxed",
        "request:sandboxed",
        "numbers.py",
        Value::Null,
        "log",
    );
    let failed = server.get("/api/v3/engine/sandboxed", &[]);
    assert_eq!(failed.status, 500, "{}", failed.text());
    assert!(
        failed.text().contains("No module named 'ujson'"),
        "{}",
        failed.text()
    );
}
