//! Request triggers on the real server: `/api/v3/engine/<path>` runs the plugin in the
//! sandbox, on the real database, and answers with what it returned.

use crate::server::{TestServer, plugin_dir_with};
use serde_json::{Value, json};
use std::path::Path;

/// Counts calls per caller: writes a row with `write_sync`, reads the count back with a
/// parameterised query, and batches one more row with `write` (written after success).
const COUNTER: &str = r#"
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    who = query_parameters.get("who", "nobody")
    influxdb3_local.write_sync(LineBuilder("hits").tag("who", who).int64_field("n", 1), False)
    rows = influxdb3_local.query("SELECT count(*) AS n FROM hits WHERE who = $who", {"who": who})
    influxdb3_local.write(LineBuilder("audit").tag("who", who).int64_field("n", rows[0]["n"]))
    influxdb3_local.info(f"{who} called")
    return {"who": who, "count": rows[0]["n"], "limit": args["limit"]}, 201
"#;

const FAILING: &str = r#"
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    influxdb3_local.write(LineBuilder("never").int64_field("n", 1))
    raise Exception("boom")
"#;

fn plugins(dir: &Path) -> String {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugin dir");
    std::fs::write(plugins.join("counter.py"), COUNTER).expect("written");
    std::fs::write(plugins.join("failing.py"), FAILING).expect("written");
    let echo =
        std::fs::read_to_string(crate::support::root().join("examples/python/request_plugin.py"))
            .expect("example");
    std::fs::write(plugins.join("echo.py"), echo).expect("written");
    plugins.to_string_lossy().into_owned()
}

#[test]
fn request_triggers_run_their_plugins_on_the_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = plugins(dir.path());
    let server = TestServer::start_with(dir.path(), &["--plugin-dir", &plugin_dir]);
    server.create_database("db");
    server.add_trigger("echo", "request:echo", "echo.py", Value::Null, "log");
    server.add_trigger(
        "counter",
        "request:hooks/count",
        "counter.py",
        json!({"limit": "5"}),
        "log",
    );
    server.add_trigger("failing", "request:boom", "failing.py", Value::Null, "log");

    let echoed = server.post(
        "/api/v3/engine/echo?name=sl%C3%BCice&x=a+b",
        &[("content-type", "application/json")],
        br#"{"hello": "world"}"#,
    );
    assert_eq!(echoed.status, 200, "{}", echoed.text());
    assert_eq!(echoed.header("content-type"), Some("application/json"));
    assert_eq!(
        echoed.json(),
        json!({"query": {"name": "slüice", "x": "a b"}, "body": {"hello": "world"}, "content_type": "application/json"})
    );

    for expected in 1..=2 {
        let counted = server.get("/api/v3/engine/hooks/count?who=ann", &[]);
        assert_eq!(counted.status, 201, "{}", counted.text());
        assert_eq!(
            counted.json(),
            json!({"who": "ann", "count": expected, "limit": "5"})
        );
    }
    // The batched writes were written before the answer.
    assert_eq!(
        server.query("db", "SELECT who, n FROM audit ORDER BY n"),
        json!([{"who": "ann", "n": 1}, {"who": "ann", "n": 2}])
    );

    let failed = server.get("/api/v3/engine/boom", &[]);
    assert_eq!(failed.status, 500);
    assert!(
        failed.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("boom"),
        "{}",
        failed.text()
    );
    let tables = server.query(
        "db",
        "SELECT table_name FROM information_schema.tables WHERE table_name = 'never'",
    );
    assert_eq!(
        tables,
        json!([]),
        "a failed invocation's batched writes are discarded"
    );

    assert_eq!(server.get("/api/v3/engine/nope", &[]).status, 404);
    assert_eq!(
        server
            .post(
                "/api/v3/configure/processing_engine_trigger/disable?db=db&trigger_name=echo",
                &[],
                b""
            )
            .status,
        200
    );
    assert_eq!(
        server.get("/api/v3/engine/echo", &[]).status,
        404,
        "a disabled trigger serves nothing"
    );
    assert_eq!(
        server
            .post(
                "/api/v3/configure/processing_engine_trigger/enable?db=db&trigger_name=echo",
                &[],
                b""
            )
            .status,
        200
    );
    assert_eq!(server.get("/api/v3/engine/echo", &[]).status, 200);
    // What the plugins logged, and what each invocation cost, per database.
    let errors = server.query("db", "SELECT log_level, log_text FROM system.processing_engine_logs WHERE trigger_name = 'failing'");
    assert_eq!(errors[0]["log_level"], "ERROR", "{errors}");
    let text = errors[0]["log_text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("error running request plugin: ") && text.contains("boom"),
        "{errors}"
    );
    let logs = server.query("db", "SELECT trigger_name, log_level, log_text FROM system.processing_engine_logs WHERE trigger_name = 'counter'");
    assert_eq!(
        logs,
        json!([{"trigger_name": "counter", "log_level": "INFO", "log_text": "ann called"}, {"trigger_name": "counter", "log_level": "INFO", "log_text": "ann called"}])
    );
    let invocations = server.query(
        "db",
        "SELECT trigger_name, outcome, cpu_time_ms > 0 AS cpu, peak_memory_bytes > 0 AS memory, bytes_written > 0 AS wrote, error \
         FROM system.processing_engine_invocations WHERE trigger_name IN ('counter', 'failing') ORDER BY start_time",
    );
    let rows = invocations.as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{invocations}");
    assert_eq!(
        rows[0],
        json!({"trigger_name": "counter", "outcome": "success", "cpu": true, "memory": true, "wrote": true}),
        "a null error is left out of the JSON row"
    );
    assert_eq!(
        (rows[2]["trigger_name"].clone(), rows[2]["outcome"].clone()),
        (json!("failing"), json!("error"))
    );
    // A failed call is charged what it used until it raised; its batched write never
    // left the sandbox.
    assert_eq!(
        (&rows[2]["cpu"], &rows[2]["memory"], &rows[2]["wrote"]),
        (&json!(true), &json!(true), &json!(false)),
        "{invocations}"
    );
    assert!(
        rows[2]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("boom"),
        "{invocations}"
    );
    // What each trigger used, for billing: since the start, and in the hour.
    let usage = server.query(
        "db",
        "SELECT trigger_name, hour IS NULL AS since_start, sum(invocations) AS invocations, \
         sum(errors) AS errors, bool_and(cpu_time_ms > 0) AS cpu, \
         sum(query_rows) AS query_rows \
         FROM system.processing_engine_usage WHERE trigger_name IN ('counter', 'failing') \
         GROUP BY trigger_name, since_start ORDER BY since_start DESC, trigger_name",
    );
    // `counter` queries one row per call; `failing` none.
    assert_eq!(
        usage,
        json!([
            {"trigger_name": "counter", "since_start": true, "invocations": 2, "errors": 0, "cpu": true, "query_rows": 2},
            {"trigger_name": "failing", "since_start": true, "invocations": 1, "errors": 1, "cpu": true, "query_rows": 0},
            {"trigger_name": "counter", "since_start": false, "invocations": 2, "errors": 0, "cpu": true, "query_rows": 2},
            {"trigger_name": "failing", "since_start": false, "invocations": 1, "errors": 1, "cpu": true, "query_rows": 0},
        ])
    );
    server.create_database("other");
    assert_eq!(
        server.query(
            "other",
            "SELECT (SELECT count(*) FROM system.processing_engine_logs) + \
             (SELECT count(*) FROM system.processing_engine_usage) AS n"
        ),
        json!([{"n": 0}]),
        "each database sees its own"
    );

    let anonymous = crate::http::request(server.address, "GET", "/api/v3/engine/echo", &[], b"");
    assert_eq!(anonymous.status, 401, "engine paths need a token");

    // The same calls, counted for Prometheus; only the admin token may read them.
    let metrics = server.get("/metrics", &[]);
    assert_eq!(metrics.status, 200, "{}", metrics.text());
    let text = metrics.text();
    for expected in [
        r#"sluice_plugin_invocations_total{database="db",trigger="counter",outcome="success"} 2"#,
        r#"sluice_plugin_invocations_total{database="db",trigger="failing",outcome="error"} 1"#,
    ] {
        assert!(text.contains(expected), "{expected} not in\n{text}");
    }
    let anonymous = crate::http::request(server.address, "GET", "/metrics", &[], b"");
    assert_eq!(anonymous.status, 401);

    // A deleted trigger's usage stays counted, in its database's row of deleted triggers
    // (so that triggers created and deleted again and again pile nothing up).
    let deleted = server.cli(&["delete", "trigger", "-d", "db", "--force", "failing"]);
    assert!(
        deleted.status.success(),
        "{}",
        crate::support::text(&deleted)
    );
    let usage = server.query(
        "db",
        "SELECT trigger_name, invocations, errors FROM system.processing_engine_usage \
         WHERE hour IS NULL AND (trigger_name IS NULL OR trigger_name = 'failing')",
    );
    assert_eq!(usage, json!([{"invocations": 1, "errors": 1}]), "{usage}");
    let text = server.get("/metrics", &[]).text();
    assert!(
        text.contains(
            r#"sluice_plugin_invocations_total{database="db",trigger="",outcome="error"} 1"#
        ) && !text.contains(r#"trigger="failing""#),
        "{text}"
    );
}

/// Writes, for each table of a flush except its own, a row with the table's row count;
/// with the argument `fail` it raises instead.
const REPORTS: &str = r#"
def process_writes(influxdb3_local, table_batches, args=None):
    if args and args.get("fail"):
        raise Exception("failing on purpose")
    for batch in table_batches:
        if batch["table_name"] == "reports":
            continue
        line = LineBuilder("reports").tag("table", batch["table_name"]).int64_field("rows", len(batch["rows"]))
        influxdb3_local.write(line)
"#;

/// Writes a row with the instant it was called for.
const TICKS: &str = r#"
def process_scheduled_call(influxdb3_local, call_time, args=None):
    influxdb3_local.write(LineBuilder("ticks").int64_field("at", int(call_time.timestamp() * 1000)))
"#;

/// Polls `sql` on database `db` until `done` holds for its rows.
fn eventually(server: &TestServer, sql: &str, done: impl Fn(&Value) -> bool) -> Value {
    server.eventually("db", sql, done)
}

#[test]
fn wal_and_schedule_triggers_fire_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = plugins(dir.path());
    std::fs::write(Path::new(&plugin_dir).join("reports.py"), REPORTS).expect("written");
    std::fs::write(Path::new(&plugin_dir).join("ticks.py"), TICKS).expect("written");
    let flags = ["--plugin-dir", plugin_dir.as_str()];
    let server = TestServer::start_with(dir.path(), &flags);
    server.create_database("db");
    // A table trigger for a table that does not exist yet.
    server.add_trigger("cpu_reports", "table:cpu", "reports.py", Value::Null, "log");
    server.add_trigger(
        "all_reports",
        "all_tables",
        "reports.py",
        Value::Null,
        "log",
    );
    server.add_trigger("ticks", "every:1s", "ticks.py", Value::Null, "log");

    assert_eq!(
        server
            .post(
                "/api/v3/write_lp?db=db",
                &[],
                b"cpu,host=a usage=1 1\ncpu,host=b usage=2 2\nmem free=3i 3"
            )
            .status,
        204
    );
    // cpu: one report from each trigger; mem: one from all_tables only. The ticks trigger's
    // writes are reported too (plugin writes re-trigger WAL triggers), whenever they come.
    let reports = eventually(
        &server,
        "SELECT \"table\", rows FROM reports WHERE \"table\" <> 'ticks' ORDER BY \"table\", rows",
        |rows| rows.as_array().is_some_and(|r| r.len() >= 3),
    );
    assert_eq!(
        reports,
        json!([{"table": "cpu", "rows": 2}, {"table": "cpu", "rows": 2}, {"table": "mem", "rows": 1}])
    );

    let ticks = eventually(&server, "SELECT at FROM ticks ORDER BY at", |rows| {
        rows.as_array().is_some_and(|r| r.len() >= 2)
    });
    for tick in ticks.as_array().expect("rows") {
        assert_eq!(
            tick["at"].as_i64().expect("ms") % 1000,
            0,
            "every:1s fires on whole seconds: {ticks}"
        );
    }

    // error_behavior disable: the failure is recorded in the catalog, and stays after a restart.
    server.add_trigger(
        "fragile",
        "table:disk",
        "reports.py",
        json!({"fail": "yes"}),
        "disable",
    );
    assert_eq!(
        server
            .post("/api/v3/write_lp?db=db", &[], b"disk used=1i 1")
            .status,
        204
    );
    eventually(
        &server,
        "SELECT disabled FROM system.processing_engine_triggers WHERE trigger_name = 'fragile'",
        |rows| rows == &json!([{"disabled": true}]),
    );
    // The failure is an ERROR line of the trigger, as upstream logs it.
    let errors = server.query(
        "db",
        "SELECT log_level, log_text FROM system.processing_engine_logs WHERE trigger_name = 'fragile'",
    );
    assert_eq!(errors[0]["log_level"], "ERROR", "{errors}");
    let text = errors[0]["log_text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("error executing wal plugin: ") && text.contains("failing on purpose"),
        "{errors}"
    );

    // The disable is visible in memory just before it is on disk; any later catalog
    // change waits for it (catalog changes are serialised), so one marks it durable.
    server.create_database("after_disable");
    drop(server);
    let server = TestServer::start_with(dir.path(), &flags);
    let disabled = server.query("db", "SELECT trigger_name FROM system.processing_engine_triggers WHERE disabled ORDER BY trigger_name");
    assert_eq!(disabled, json!([{"trigger_name": "fragile"}]));
    // Enabled triggers start at boot.
    assert_eq!(
        server
            .post("/api/v3/write_lp?db=db", &[], b"cpu,host=c usage=3 4")
            .status,
        204
    );
    eventually(
        &server,
        "SELECT count(*) AS n FROM reports WHERE \"table\" = 'cpu'",
        |rows| rows == &json!([{"n": 4}]),
    );
    // Disabling stops a trigger at once.
    assert_eq!(
        server
            .post(
                "/api/v3/configure/processing_engine_trigger/disable?db=db&trigger_name=ticks",
                &[],
                b""
            )
            .status,
        200
    );
    // No tick is planned after the disable. (The write of a tick that was running may
    // still land later, so rows are told apart by their planned instant, not counted.)
    let disabled_ms = chrono::Utc::now().timestamp_millis();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(
        server.query(
            "db",
            &format!("SELECT count(*) AS n FROM ticks WHERE at > {disabled_ms}")
        ),
        json!([{"n": 0}]),
        "a disabled schedule does not fire"
    );
}

/// A package plugin whose module keeps a counter: its state lives as long as its instance.
const MODULE_COUNTER: &str = r#"
calls = 0

def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    global calls
    calls += 1
    return {"calls": calls, "version": 1}
"#;

fn calls(server: &TestServer, path: &str) -> Value {
    let response = server.get(&format!("/api/v3/engine/{path}"), &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

#[test]
fn warm_instances_belong_to_one_trigger_and_reload_changed_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = plugins(dir.path());
    let package = Path::new(&plugin_dir).join("module_counter");
    std::fs::create_dir_all(&package).expect("package dir");
    std::fs::write(package.join("__init__.py"), MODULE_COUNTER).expect("written");
    let server = TestServer::start_with(dir.path(), &["--plugin-dir", &plugin_dir]);
    server.create_database("db");
    server.add_trigger(
        "first",
        "request:first",
        "module_counter",
        Value::Null,
        "log",
    );
    server.add_trigger(
        "second",
        "request:second",
        "module_counter",
        Value::Null,
        "log",
    );

    // Sequential calls reuse the trigger's warm instance, so module state carries over
    // between them, as upstream; the other trigger has instances of its own.
    assert_eq!(calls(&server, "first"), json!({"calls": 1, "version": 1}));
    assert_eq!(calls(&server, "first"), json!({"calls": 2, "version": 1}));
    assert_eq!(
        calls(&server, "second"),
        json!({"calls": 1, "version": 1}),
        "never another trigger's instance"
    );

    // A changed plugin is loaded afresh (its modification time moves forward).
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(
        package.join("__init__.py"),
        MODULE_COUNTER.replace("\"version\": 1", "\"version\": 2"),
    )
    .expect("rewritten");
    let bumped = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    std::fs::File::options()
        .write(true)
        .open(package.join("__init__.py"))
        .expect("opens")
        .set_modified(bumped)
        .expect("touched");
    let reloaded = calls(&server, "first");
    assert_eq!(reloaded["version"], 2, "{reloaded}");
    drop(server);

    // With --fresh-instances nothing stays between calls.
    let fresh = TestServer::start_with(
        dir.path(),
        &["--plugin-dir", &plugin_dir, "--fresh-instances"],
    );
    assert_eq!(calls(&fresh, "first")["calls"], 1);
    assert_eq!(calls(&fresh, "first")["calls"], 1);
}

#[test]
fn a_plugin_that_loops_forever_stalls_neither_ingest_nor_its_disabling() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = plugins(dir.path());
    let looping =
        std::fs::read_to_string(crate::support::root().join("examples/hostile/infinite_loop.py"))
            .expect("example");
    std::fs::write(Path::new(&plugin_dir).join("loop.py"), looping).expect("written");
    // Limits far beyond the test's time: only stopping the trigger can end the loop, and
    // a request stalled behind it would fail on the client's 30 s timeout.
    let flags = [
        "--plugin-dir",
        plugin_dir.as_str(),
        "--wall-time",
        "1h",
        "--cpu-time",
        "1h",
    ];
    let server = TestServer::start_with(dir.path(), &flags);
    server.create_database("db");
    server.add_trigger("spin", "all_tables", "loop.py", Value::Null, "log");
    server.add_trigger("echo", "request:echo", "echo.py", Value::Null, "log");

    // The plugin spins from the first flush on; meanwhile writes are acknowledged and
    // queryable, and other triggers answer.
    for i in 0..20 {
        let line = format!("m f={i}i {i}");
        assert_eq!(
            server
                .post("/api/v3/write_lp?db=db", &[], line.as_bytes())
                .status,
            204
        );
    }
    assert_eq!(
        server.query("db", "SELECT count(*) AS n FROM m"),
        json!([{"n": 20}])
    );
    assert_eq!(server.get("/api/v3/engine/echo", &[]).status, 200);
    // Disabling and deleting answer while the plugin is still spinning.
    let disabled = server.post(
        "/api/v3/configure/processing_engine_trigger/disable?db=db&trigger_name=spin",
        &[],
        b"",
    );
    assert_eq!(disabled.status, 200);
    let deleted = server.send(
        "DELETE",
        "/api/v3/configure/processing_engine_trigger?db=db&trigger_name=spin",
        &[],
        b"",
    );
    assert_eq!(deleted.status, 200);
    assert_eq!(
        server.query(
            "db",
            "SELECT count(*) AS n FROM system.processing_engine_triggers"
        ),
        json!([{"n": 1}])
    );
}

/// Marks itself busy in the trigger's cache while it works, and says whether another
/// call was busy when it started.
const BUSY: &str = r#"
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    overlapped = influxdb3_local.cache.get("busy", default=False)
    influxdb3_local.cache.put("busy", True)
    total = 0
    for i in range(150000):
        total += i
    influxdb3_local.cache.put("busy", False)
    return {"overlapped": overlapped}
"#;

#[test]
fn a_synchronous_request_trigger_serves_one_request_at_a_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = plugins(dir.path());
    std::fs::write(Path::new(&plugin_dir).join("busy.py"), BUSY).expect("written");
    let server = std::sync::Arc::new(TestServer::start_with(
        dir.path(),
        &["--plugin-dir", &plugin_dir],
    ));
    server.create_database("db");
    server.add_trigger("busy", "request:busy", "busy.py", Value::Null, "log");
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let server = std::sync::Arc::clone(&server);
            std::thread::spawn(move || {
                (0..3)
                    .map(|_| {
                        let response = server.get("/api/v3/engine/busy", &[]);
                        assert_eq!(response.status, 200, "{}", response.text());
                        response.json()["overlapped"].clone()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for client in clients {
        for overlapped in client.join().expect("client") {
            assert_eq!(overlapped, json!(false), "two calls ran at once");
        }
    }
}

#[test]
fn deleting_a_database_stops_its_triggers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = plugins(dir.path());
    std::fs::write(Path::new(&plugin_dir).join("ticks.py"), TICKS).expect("written");
    let server = TestServer::start_with(dir.path(), &["--plugin-dir", &plugin_dir]);
    server.create_database("db");
    server.add_trigger("ticks", "every:1s", "ticks.py", Value::Null, "log");
    eventually(&server, "SELECT count(*) AS n FROM ticks", |rows| {
        rows[0]["n"].as_i64().unwrap_or(0) >= 1
    });
    let deleted = server.send("DELETE", "/api/v3/configure/database?db=db", &[], b"");
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    // Were the trigger still running, its next write would create the database again.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let databases = server.get("/api/v3/configure/database?format=json", &[]);
    assert_eq!(databases.json(), json!([]), "{}", databases.text());
}

/// Reaches into the database named by `?db=`: a query, an immediate write or a batched
/// write, as `?how=` says; answers 403 with the error a refused call raised.
const CROSS_DATABASE: &str = r#"
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    other, how = query_parameters["db"], query_parameters["how"]
    try:
        if how == "query":
            return {"rows": influxdb3_local.query("SELECT n FROM kept", database=other)}
        if how == "write_sync":
            influxdb3_local.write_sync_to_db(other, LineBuilder("immediate").int64_field("n", 1), False)
    except Exception as e:
        return {"error": str(e)}, 403
    if how == "write":
        influxdb3_local.write_to_db(other, LineBuilder("batched").int64_field("n", 1))
    return {"done": how}
"#;

/// Issue 17, point 5: a trigger's plugin reaches what its creator could, narrowed by
/// `--grant-database`.
#[test]
fn a_trigger_reaches_what_its_creator_could_narrowed_by_its_grants() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = plugin_dir_with(dir.path(), &[("cross.py", CROSS_DATABASE)]);
    let server = TestServer::start_with(dir.path(), &["--plugin-dir", &plugins.to_string_lossy()]);
    for name in ["db", "tenant_b", "other"] {
        server.create_database(name);
    }
    let written = server.post("/api/v3/write_lp?db=tenant_b", &[], b"kept n=7i 1");
    assert_eq!(written.status, 204, "{}", written.text());
    // The admin's trigger reaches every database, as upstream.
    server.add_trigger("admins", "request:admins", "cross.py", Value::Null, "log");
    // Narrowed from the command line to one other database.
    let output = server.cli(&[
        "create",
        "trigger",
        "-d",
        "db",
        "narrowed",
        "--trigger-spec",
        "request:narrowed",
        "--path",
        "cross.py",
        "--grant-database",
        "other",
    ]);
    assert!(output.status.success(), "{}", crate::support::text(&output));
    // A tenant's: its own database, and `tenant_b` to read only.
    let tenant = server.create_token("tenant", &["db:db:read,write,manage", "db:tenant_b:read"]);
    let bearer = format!("Bearer {tenant}");
    let created = server.send(
        "POST",
        "/api/v3/configure/processing_engine_trigger",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        crate::server::trigger_body("tenants", "request:tenants", "cross.py", Value::Null, "log")
            .to_string()
            .as_bytes(),
    );
    assert_eq!(created.status, 200, "{}", created.text());
    assert_eq!(
        server.query("db", "SELECT trigger_name, granted_databases, reach FROM system.processing_engine_triggers ORDER BY trigger_name"),
        json!([
            {"trigger_name": "admins", "granted_databases": "", "reach": "all databases"},
            {"trigger_name": "narrowed", "granted_databases": "other", "reach": "all databases"},
            {"trigger_name": "tenants", "granted_databases": "", "reach": "db:db:read,write db:tenant_b:read"},
        ])
    );

    let refused = |trigger: &str, how: &str, refusal: &str| {
        let refused = server.get(
            &format!("/api/v3/engine/{trigger}?db=tenant_b&how={how}"),
            &[],
        );
        let expected = if how == "write" { 500 } else { 403 };
        assert_eq!(
            refused.status,
            expected,
            "{trigger} {how}: {}",
            refused.text()
        );
        assert!(
            refused.text().contains(refusal),
            "{trigger} {how}: {}",
            refused.text()
        );
        assert!(!refused.text().contains("trapped"), "{}", refused.text());
    };
    let narrowed = "trigger 'narrowed' of database 'db' may not";
    refused(
        "narrowed",
        "query",
        &format!("{narrowed} query database 'tenant_b'"),
    );
    refused(
        "narrowed",
        "write_sync",
        &format!("{narrowed} write to database 'tenant_b'"),
    );
    // A refused batched write fails the call, so nothing it wrote is kept.
    refused(
        "narrowed",
        "write",
        &format!("{narrowed} write to database 'tenant_b'"),
    );
    let tenants = "trigger 'tenants' of database 'db' may not write to database 'tenant_b'";
    refused("tenants", "write_sync", tenants);
    refused("tenants", "write", tenants);
    let tables = |db: &str| {
        server.query(
            db,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'iox' ORDER BY table_name",
        )
    };
    assert_eq!(tables("tenant_b"), json!([{"table_name": "kept"}]));

    // Its own database, named or not, is always allowed.
    let own = server.get("/api/v3/engine/narrowed?db=db&how=write_sync", &[]);
    assert_eq!(own.status, 200, "{}", own.text());
    for trigger in ["admins", "tenants"] {
        let queried = server.get(
            &format!("/api/v3/engine/{trigger}?db=tenant_b&how=query"),
            &[],
        );
        assert_eq!(
            queried.json(),
            json!({"rows": [{"n": 7}]}),
            "{}",
            queried.text()
        );
    }
    for how in ["write_sync", "write"] {
        let done = server.get(&format!("/api/v3/engine/admins?db=tenant_b&how={how}"), &[]);
        assert_eq!(done.json(), json!({"done": how}), "{}", done.text());
    }
    assert_eq!(
        tables("tenant_b"),
        json!([{"table_name": "batched"}, {"table_name": "immediate"}, {"table_name": "kept"}])
    );
}

const SPIN: &str = r#"
def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    total = 0
    for i in range(1000000):
        total += i * i
    return str(total)
"#;

#[test]
fn a_trigger_may_have_limits_of_its_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = plugin_dir_with(dir.path(), &[("spin.py", SPIN)]);
    let server = TestServer::start_with(dir.path(), &["--plugin-dir", &plugins.to_string_lossy()]);
    server.create_database("db");
    server.add_trigger("roomy", "request:roomy", "spin.py", Value::Null, "log");
    let output = server.cli(&[
        "create",
        "trigger",
        "-d",
        "db",
        "tight",
        "--trigger-spec",
        "request:tight",
        "--path",
        "spin.py",
        "--cpu-time",
        "20ms",
        "--wall-time",
        "3s",
    ]);
    assert!(output.status.success(), "{}", crate::support::text(&output));
    assert_eq!(
        server.query("db", "SELECT trigger_name, limit_overrides FROM system.processing_engine_triggers ORDER BY trigger_name"),
        json!([{"trigger_name": "roomy", "limit_overrides": ""}, {"trigger_name": "tight", "limit_overrides": "cpu_time_ms=20,wall_time_ms=3000"}])
    );

    let roomy = server.get("/api/v3/engine/roomy", &[]);
    assert_eq!(roomy.status, 200, "{}", roomy.text());
    let tight = server.get("/api/v3/engine/tight", &[]);
    assert_eq!(tight.status, 500, "{}", tight.text());
    assert!(
        tight.text().contains("CPU time limit of 20ms exceeded"),
        "{}",
        tight.text()
    );

    for (limits, error) in [
        (
            json!({"cpu_time": "0s"}),
            "invalid limits: the CPU-time limit must be more than zero",
        ),
        (
            json!({"wall_time": "soon"}),
            "invalid limits: wall_time `soon`",
        ),
        (
            json!({"memory_limit_mib": 1_000_000}),
            "invalid limits: a memory limit of 1000000 MiB is over the sandbox's largest memory",
        ),
        (json!({"cpu": 1}), "unknown field `cpu`"),
        // The CPU budget was once counted in fuel: the name is refused, and the error
        // lists `cpu_time` among the names there are.
        (
            json!({"fuel": 1}),
            "unknown field `fuel`, expected one of `cpu_time`",
        ),
    ] {
        let mut body =
            crate::server::trigger_body("bad", "request:bad", "spin.py", Value::Null, "log");
        body["limits"] = limits.clone();
        let refused = server.create_trigger(&body);
        assert_eq!(refused.status, 400, "{limits}: {}", refused.text());
        assert!(
            refused.text().contains(error),
            "{limits}: {}",
            refused.text()
        );
    }
}

/// Batches `?n=` lines to `bulk`, the one numbered `?bad=` unparsable; with `?split=`, the
/// last line of the first chunk handed to the host (4,096 lines) opens a string value
/// that the next write closes.
const BULK: &str = r#"
class Raw:
    def __init__(self, text):
        self.text = text

    def build(self):
        return self.text

def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    n, bad = int(query_parameters["n"]), int(query_parameters.get("bad", "0"))
    for i in range(1, n + 1):
        if i == bad:
            influxdb3_local.write(Raw("bulk,oops"))
        else:
            influxdb3_local.write(LineBuilder("bulk").tag("k", f"k{i % 7}").int64_field("i", i).time_ns(i))
    if "split" in query_parameters:
        influxdb3_local.write(Raw('split f="first'))
        influxdb3_local.write(Raw('half" 5'))
    return "ok"
"#;

#[test]
fn large_batched_writes_are_written_whole_as_one_body_or_not_at_all() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = plugins(dir.path());
    std::fs::write(Path::new(&plugin_dir).join("bulk.py"), BULK).expect("written");
    let server = TestServer::start_with(dir.path(), &["--plugin-dir", &plugin_dir]);
    server.create_database("db");
    server.add_trigger("bulk", "request:bulk", "bulk.py", Value::Null, "log");

    let written = server.get("/api/v3/engine/bulk?n=10000", &[]);
    assert_eq!(written.status, 200, "{}", written.text());
    let totals = "SELECT count(*) AS n, sum(i) AS total FROM bulk";
    let expected = json!([{"n": 10000, "total": 50_005_000}]);
    assert_eq!(server.query("db", totals), expected);

    // The bad line is in the third chunk; its number counts the lines of the whole body.
    let refused = server.get("/api/v3/engine/bulk?n=10000&bad=9000", &[]);
    assert_eq!(refused.status, 500, "{}", refused.text());
    let error = refused.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("line protocol parse error on write to db db: line 9000:"),
        "{error}"
    );
    assert_eq!(
        server.query("db", totals),
        expected,
        "nothing of it was written"
    );

    // Written lines are joined by newlines, chunk ends included, so a string value may
    // go on into the next write, as when the body is parsed whole.
    let split = server.get("/api/v3/engine/bulk?n=4095&split=1", &[]);
    assert_eq!(split.status, 200, "{}", split.text());
    assert_eq!(
        server.query("db", "SELECT f, CAST(time AS BIGINT) AS t FROM split"),
        json!([{"f": "first\nhalf", "t": 5}])
    );
}

/// Issue 17 (the catalog first): a database deleted and created again under its name,
/// with a trigger of the same name, is another database with another trigger, whatever
/// the engine kept for the first (caches, warm instances, logs, usage).
#[test]
fn a_database_created_again_under_its_name_starts_afresh() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = crate::support::root().join("tests/plugins/engine/remembers.py");
    let code = std::fs::read_to_string(source).expect("test plugin");
    let plugins = plugin_dir_with(dir.path(), &[("remembers.py", &code)]);
    let flags = ["--plugin-dir", plugins.to_str().expect("utf-8 path")];
    let server = TestServer::start_with(dir.path(), &flags);
    let create = |server: &TestServer| {
        server.create_database("db");
        server.add_trigger("memo", "request:memo", "remembers.py", Value::Null, "log");
    };
    let call = |server: &TestServer| {
        let response = server.get("/api/v3/engine/memo", &[]);
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    };
    let usage = |server: &TestServer| {
        let rows = server.query(
            "db",
            "SELECT invocations FROM system.processing_engine_usage WHERE hour IS NULL",
        );
        rows[0]["invocations"].as_u64()
    };
    let lines = |server: &TestServer| {
        let rows = server.query(
            "db",
            "SELECT count(*) AS n FROM system.processing_engine_logs",
        );
        rows[0]["n"].as_i64()
    };
    create(&server);
    assert_eq!(call(&server), json!({"own": null, "shared": null}));
    let earlier = json!({"own": "earlier", "shared": "earlier"});
    assert_eq!(call(&server), earlier);
    assert_eq!((usage(&server), lines(&server)), (Some(2), Some(2)));

    let deleted = server.send("DELETE", "/api/v3/configure/database?db=db", &[], b"");
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    create(&server);
    assert_eq!(
        call(&server),
        json!({"own": null, "shared": null}),
        "neither cache is the first database's"
    );
    assert_eq!(
        (usage(&server), lines(&server)),
        (Some(1), Some(1)),
        "the records are the new database's"
    );
}
